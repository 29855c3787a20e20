"""The vendored libraries are the pinned releases scripts/vendor-assets took, each licensed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

VENDOR = Path(__file__).resolve().parents[2] / "orchestrator" / "api" / "static" / "vendor"


def test_every_vendored_file_is_the_one_its_manifest_pins() -> None:
    # given the manifest scripts/vendor-assets wrote
    manifest = json.loads((VENDOR / "manifest.json").read_text())
    # then every file it lists is there unchanged, and each library ships its licence
    assert set(manifest) == {"@dagrejs/dagre", "uplot"}
    for package in manifest.values():
        for path, sha256 in package["files"].items():
            assert hashlib.sha256((VENDOR / path).read_bytes()).hexdigest() == sha256, path
        assert package["license"] in package["files"]
    # and nothing else sits in vendor/ unaccounted for
    listed = {p for package in manifest.values() for p in package["files"]} | {"manifest.json"}
    present = {str(p.relative_to(VENDOR)) for p in VENDOR.rglob("*") if p.is_file()}
    assert present == listed

