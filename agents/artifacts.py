"""Content-addressed local artifact store: outputs live on disk, only references travel."""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

from events.common import ArtifactRef

_URI_PREFIX = "file://"
PICKLE_MEDIA_TYPE = "application/x-python-pickle"


class ArtifactError(Exception):
    """An artifact is missing or is not the bytes its reference promises."""


class ArtifactStore:
    """Stores bytes under their sha256 so identical outputs are written once and verifiable."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()

    def put_bytes(self, data: bytes, media_type: str = "application/octet-stream") -> ArtifactRef:
        """Write atomically so a reader never sees a half-written artifact."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.root / "sha256" / digest[:2] / digest
        if not _has_size(target, len(data)):
            _write_atomically(target, data)
        return ArtifactRef(
            uri=_URI_PREFIX + str(target), sha256=digest, size=len(data), media_type=media_type
        )

    def get_bytes(self, ref: ArtifactRef) -> bytes:
        """Verify on read: a corrupted or swapped file must fail loudly, not feed a task."""
        path = self.path_for(ref)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ArtifactError(f"artifact {ref.uri} cannot be read: {exc.strerror}") from exc
        if len(data) != ref.size:
            raise ArtifactError(f"artifact {ref.uri} has {len(data)} bytes, expected {ref.size}")
        if hashlib.sha256(data).hexdigest() != ref.sha256:
            raise ArtifactError(f"artifact {ref.uri} does not match its sha256 {ref.sha256}")
        return data

    def put_object(self, obj: object) -> ArtifactRef:
        return self.put_bytes(pickle.dumps(obj, protocol=5), PICKLE_MEDIA_TYPE)

    def get_object(self, ref: ArtifactRef) -> Any:
        return pickle.loads(self.get_bytes(ref))

    def path_for(self, ref: ArtifactRef) -> Path:
        """Any absolute file:// uri is accepted, so refs from another store still resolve."""
        if not ref.uri.startswith(_URI_PREFIX):
            raise ArtifactError(f"artifact {ref.uri} is not a file:// uri")
        path = Path(ref.uri.removeprefix(_URI_PREFIX))
        if not path.is_absolute():
            raise ArtifactError(f"artifact {ref.uri} does not name an absolute path")
        return path


def _has_size(path: Path, size: int) -> bool:
    """A same-named file of the right size is taken as present; reads verify the hash."""
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def _write_atomically(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o644)
            out.write(data)
        Path(temp).replace(target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
