"""The demo's data system: deterministic, versioned digits datasets written as npz files."""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sklearn.datasets import load_digits

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DATASET = "digits"
VERSIONS = ("v1", "v2")
FEATURE_NAMES = tuple(f"pixel_{row}_{col}" for row in range(8) for col in range(8))

_SUBSET_SEED = 7
_V1_FRACTION = 0.6
_EVAL_FRACTION = 0.2
"""Rows held out of every version: the fixed evaluation set (`eval_rows`)."""
_SENSOR_GAIN = 0.75
_SENSOR_OFFSET = 3.0
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class DatasetFile:
    """One published dataset version, as the data system announces it."""

    dataset: str
    version: str
    path: Path
    sha256: str
    rows: int

    @property
    def uri(self) -> str:
        return self.path.resolve().as_uri()


def write_version(root: Path, version: str) -> DatasetFile:
    """Publish a version; deterministic bytes so the same version always has the same hash."""
    X, y = _version_rows(version)
    path = root / DATASET / f"{version}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = _npz_bytes({"X": X, "y": y})
    path.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    return DatasetFile(DATASET, version, path, digest, int(y.shape[0]))


def new_batch(version: str = "v2", *, shifted: bool = True) -> FloatArray:
    """The rows a version added, as a monitor sees them in production.

    `shifted=False` gives the same rows before the sensor change: the control sample
    that shows a drift monitor stays quiet when only the sample, not the sensor, differs.
    """
    _check_version(version)
    base_idx, new_idx = _split_indices()
    X, _ = _raw_digits()
    if version == "v1":
        return X[base_idx]
    return _sensor_shift(X[new_idx]) if shifted else X[new_idx]


def load(path: Path) -> tuple[FloatArray, IntArray]:
    """Read a published version back; dtypes are normalised so callers can rely on them."""
    with np.load(path, allow_pickle=False) as data:
        X = np.asarray(data["X"], dtype=np.float64)
        y = np.asarray(data["y"], dtype=np.int64)
    return X, y


def _version_rows(version: str) -> tuple[FloatArray, IntArray]:
    _check_version(version)
    base_idx, new_idx = _split_indices()
    X, y = _raw_digits()
    if version == "v1":
        return X[base_idx], y[base_idx]
    X_new = _sensor_shift(X[new_idx])
    return np.vstack([X[base_idx], X_new]), np.concatenate([y[base_idx], y[new_idx]])


def eval_rows() -> tuple[FloatArray, IntArray]:
    """The fixed evaluation set: rows in no version (the original scanner's), so every
    version is evaluated on the same rows and a gate compares versions on them."""
    X, y = _raw_digits()
    held = _held_indices()
    return X[held], y[held]


def _held_indices() -> npt.NDArray[np.intp]:
    _, y = _raw_digits()
    order = np.random.default_rng(_SUBSET_SEED).permutation(y.shape[0])
    return np.sort(order[:round(_EVAL_FRACTION * y.shape[0])])


def _split_indices() -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """A fixed seeded split of the rows not held out for evaluation, so v1 is always the
    same rows and v2 always extends it."""
    _, y = _raw_digits()
    order = np.random.default_rng(_SUBSET_SEED).permutation(y.shape[0])
    rest = order[round(_EVAL_FRACTION * y.shape[0]):]
    cut = round(_V1_FRACTION * rest.shape[0])
    return np.sort(rest[:cut]), np.sort(rest[cut:])


def _sensor_shift(X: FloatArray) -> FloatArray:
    """A new scanner: lower gain, raised black level, still integer counts in [0, 16]."""
    shifted = np.rint(X * _SENSOR_GAIN + _SENSOR_OFFSET)
    return np.clip(shifted, 0.0, 16.0).astype(np.float64)


def _raw_digits() -> tuple[FloatArray, IntArray]:
    X, y = load_digits(return_X_y=True)
    return np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.int64)


def _npz_bytes(arrays: dict[str, npt.NDArray[np.generic]]) -> bytes:
    """Like np.savez, but with fixed zip timestamps (np.savez stamps the current time)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, mode="w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, array, allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", _ZIP_EPOCH), member.getvalue())
    return buffer.getvalue()


def _check_version(version: str) -> None:
    if version not in VERSIONS:
        raise ValueError(f"unknown digits version {version!r}; known: {', '.join(VERSIONS)}")
