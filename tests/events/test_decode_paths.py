"""The fast decode path and the careful one agree on every input, hostile ones included.

The fast path (one Rust-side parse) serves the replay hot path; the careful one explains what
is wrong. If the fast one accepted what the careful one refuses (a version written "1", say),
whether a record is an event would depend on which path happened to read it.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from events.catalog import CATALOG
from events.codec import _fast, decode_obj
from events.errors import EventParseError
from tests.events.samples import BY_TYPE, encoded

ODD_VALUES: st.SearchStrategy[Any] = st.sampled_from([
    None, True, False, 0, 1, 2, -1, 1.0, 1.5, "1", "2", "", " 1", "run_created", [], {},
])
FIELDS = ["version", "type", "id", "time", "sequence", "subject", "source"]


@st.composite
def hostile(draw: st.DrawFn) -> bytes:
    """A real event of some type with one envelope field, or one data field, replaced."""
    sample = BY_TYPE[draw(st.sampled_from(sorted(BY_TYPE)))]
    obj: dict[str, Any] = json.loads(encoded(sample))
    if draw(st.booleans()):
        obj[draw(st.sampled_from(FIELDS))] = draw(ODD_VALUES)
    elif obj["data"]:
        obj["data"][draw(st.sampled_from(sorted(obj["data"])))] = draw(ODD_VALUES)
    return json.dumps(obj).encode()


def careful(raw: bytes) -> object:
    try:
        return decode_obj(json.loads(raw), CATALOG)
    except EventParseError:
        return "refused"


@settings(max_examples=1500, deadline=None)
@given(hostile())
def test_whatever_the_fast_path_accepts_the_careful_path_accepts_the_same(raw: bytes) -> None:
    fast = _fast(raw, CATALOG)
    if fast is not None:
        assert careful(raw) == fast


def test_a_version_written_as_a_string_is_refused_by_both_paths() -> None:
    obj = json.loads(encoded(BY_TYPE["run_created"]))
    obj["version"] = "1"
    raw = json.dumps(obj).encode()

    assert (_fast(raw, CATALOG), careful(raw)) == (None, "refused")
