"""JSON Schema per event type, for data systems that publish without importing Baton."""

from __future__ import annotations

import json
from pathlib import Path

from events.catalog import CATALOG, Catalog
from events.codec import _typed_envelope
from events.dlq import DeadLetter


def export_json_schemas(directory: Path, catalog: Catalog = CATALOG) -> list[Path]:
    """Write `<type>.v<version>.schema.json` for every envelope type; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for type_, cls in sorted(catalog.types.items()):
        schema = _typed_envelope(cls).model_json_schema()
        schema["title"] = f"{type_} v{cls.VERSION}"
        written.append(_write(directory / f"{type_}.v{cls.VERSION}.schema.json", schema))
    written.append(_write(directory / "dead_letter.schema.json", DeadLetter.model_json_schema()))
    return written


def _write(path: Path, schema: dict[str, object]) -> Path:
    path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
    return path
