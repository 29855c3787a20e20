"""Bytes this process encoded decode to the envelope that was encoded, without a parse, and only
when parsing them would give that same envelope (events/recent.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from events.catalog import CATALOG
from events.codec import RECENT, decode, decode_obj, encode
from events.envelope import Envelope, envelope
from events.errors import EventParseError
from events.payloads import Payload
from events.recent import Recent
from tests.events.samples import AT, BY_TYPE, RUN


def wrapped(data: Payload, **fields: Any) -> Envelope[Payload]:
    given: dict[str, Any] = dict(id=f"{data.TYPE}-1", time=AT, source="tests", subject=RUN,
                                 correlation_id="evt-1", causation_id="evt-0", sequence=7)
    return envelope(data, **{**given, **fields})


@pytest.mark.parametrize("type_", sorted(BY_TYPE))
def test_bytes_encoded_here_decode_to_the_encoded_envelope_which_is_what_parsing_gives(
        type_: str) -> None:
    # given an event of each type, encoded in this process
    env = wrapped(BY_TYPE[type_])
    raw = encode(env)
    # when the same bytes come back, as the same object or read again from a file
    same, copy = decode(raw), decode(bytes(bytearray(raw)))
    # then both are the envelope that was encoded, equal to what parsing the bytes gives
    parsed = decode_obj(json.loads(raw), CATALOG)
    assert same is env and copy is env
    assert parsed == env
    assert parsed.model_dump_json() == env.model_dump_json()
    assert type(parsed.data) is type(env.data)


@pytest.mark.parametrize("fields", [{"id": ""}, {"sequence": 0}])
def test_bytes_of_an_envelope_decode_would_refuse_are_parsed_and_refused(
        fields: dict[str, Any]) -> None:
    # given an envelope whose own fields envelope() set without validating them, badly
    raw = encode(wrapped(BY_TYPE["task_started"], **fields))
    # when its bytes are decoded
    # then they are refused, as in any other process
    with pytest.raises(EventParseError):
        decode(raw)


def test_an_envelope_of_a_version_the_catalog_lacks_is_parsed_and_refused() -> None:
    # given an event that claims a version this catalog does not have
    sample = BY_TYPE["task_started"]
    env = wrapped(sample)
    old = env.model_copy(update={"version": sample.VERSION + 1})
    # when its bytes are decoded
    raw = encode(old)
    # then they are parsed, and refused as in any other process
    with pytest.raises(EventParseError):
        decode(raw)


def test_only_the_latest_encodings_are_kept() -> None:
    # given a memory of two encodings
    recent = Recent(kept=2)
    envs = [wrapped(BY_TYPE["task_started"], id=f"e{i}") for i in range(3)]
    raws = [env.model_dump_json().encode() for env in envs]
    # when three are remembered
    for raw, env in zip(raws, envs, strict=True):
        recent.remember(raw, env)
    # then the oldest is forgotten
    assert [recent.recall(raw) for raw in raws] == [None, envs[1], envs[2]]


def test_the_memory_is_bounded_by_bytes_too() -> None:
    # given a memory of 1,000 bytes of encodings
    recent = Recent(kept_bytes=1000)
    env = wrapped(BY_TYPE["run_requested"])
    raw = env.model_dump_json().encode()
    assert len(raw) > 500
    # when two such encodings are remembered
    other = wrapped(BY_TYPE["run_requested"], id="other")
    recent.remember(raw, env)
    recent.remember(other.model_dump_json().encode(), other)
    # then the first is forgotten
    assert recent.recall(raw) is None


def test_envelope_builds_what_model_construct_builds() -> None:
    # given every field of an envelope
    for data in BY_TYPE.values():
        env = wrapped(data)
        fields = {name: getattr(env, name) for name in Envelope.model_fields}
        # when pydantic's model_construct builds one from them
        built = Envelope.model_construct(**fields)
        # then envelope() made the same instance: fields in order, fields set, extras
        assert list(env.__dict__.items()) == list(built.__dict__.items())
        assert env.model_fields_set == built.model_fields_set
        assert (env.__pydantic_extra__, env.__pydantic_private__) == (
            built.__pydantic_extra__, built.__pydantic_private__)
        assert env.model_dump_json() == built.model_dump_json()


@pytest.fixture(autouse=True)
def _fresh_memory() -> None:
    RECENT.forget()
