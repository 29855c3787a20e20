"""One check for producers and consumers: what `checked` lets a producer send, `decode` accepts;
what decode refuses, checked refuses first, with the same error. NaN and infinity are refused
by the models themselves, so they never turn into JSON null."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from events.cloudevents import decode_record
from events.codec import MAX_EVENT_BYTES, NOT_UTF8, checked, decode, encode, payload
from events.common import Resources
from events.envelope import Envelope, envelope
from events.errors import EventParseError, EventTooLarge
from events.intents import RunRequested
from events.payloads import Payload
from events.reports import AttemptSucceeded
from events.triggers import DriftDetected, TriggerInfo
from tests.events.samples import BY_TYPE

NON_FINITE = [math.nan, math.inf, -math.inf]


def drift(**overrides: Any) -> DriftDetected:
    sample = BY_TYPE["drift_detected"]
    assert isinstance(sample, DriftDetected)
    return sample.model_copy(update=overrides)


def wrapped(data: Payload, id: str = "evt-1") -> Envelope[Payload]:
    return envelope(data, id=id, time=1_700_000_000.0, source="test", subject="s")


def test_checked_returns_the_bytes_the_consumer_decodes_to_the_same_event() -> None:
    # given an event a consumer accepts
    env = wrapped(BY_TYPE["drift_detected"])
    # when it is checked for sending
    raw = checked(env)
    # then the bytes are its encoding, and decode gives the event back
    assert raw == encode(env)
    assert decode(raw) == env


def test_an_event_over_the_limit_is_refused_by_checked_with_decodes_own_error() -> None:
    # given a run request whose params are too big for one event
    request = BY_TYPE["run_requested"]
    big = request.model_copy(update={"params": {f"k{i}": "x" * 120_000 for i in range(9)}})
    env = wrapped(big, id="run-1/requested")
    # when it is checked, and its bytes decoded as a consumer would
    with pytest.raises(EventTooLarge) as producer:
        checked(env)
    with pytest.raises(EventTooLarge) as consumer:
        decode(encode(env))
    # then both refuse it with the same error, carrying the size and the limit
    assert str(producer.value) == str(consumer.value)
    assert producer.value.size == len(encode(env)) > MAX_EVENT_BYTES
    assert producer.value.limit == MAX_EVENT_BYTES


def test_the_cloudevents_reader_applies_the_same_size_limit() -> None:
    big = b" " * (MAX_EVENT_BYTES + 1)
    with pytest.raises(EventTooLarge):
        decode_record(big, [("ce_specversion", b"1.0")])


def test_an_empty_event_id_is_refused_naming_the_id() -> None:
    with pytest.raises(EventParseError) as err:
        checked(wrapped(BY_TYPE["data_arrived"], id=""))
    assert err.value.field == "id"


@pytest.mark.parametrize(("env", "field"), [
    (wrapped(BY_TYPE["data_arrived"], id="evt-\udcff"), "id"),
    (wrapped(BY_TYPE["run_requested"].model_copy(update={"params": {"k": "\udcff"}})),
     "data.params.k"),
    (wrapped(BY_TYPE["run_requested"].model_copy(update={"params": {"\udcff": "v"}})),
     "data.params.\udcff"),
], ids=["envelope id", "a param's value", "a param's key"])
def test_a_string_that_is_not_utf8_is_refused_naming_its_field(
    env: Envelope[Payload], field: str
) -> None:
    # given an envelope holding a surrogate escape (argv bytes that were not UTF-8)
    # when it is checked (or just encoded)
    for attempt in (checked, encode):
        with pytest.raises(EventParseError) as err:
            attempt(env)
        # then the error names the field, never a serialiser's traceback
        assert (err.value.field, err.value.reason) == (field, NOT_UTF8)


@pytest.mark.parametrize(("build", "field"), [
    (lambda: payload(TriggerInfo, "data.trigger", type="manual", event_id="\udcff",
                     subject="p"), "data.trigger.event_id"),
    (lambda: payload(RunRequested, **{**BY_TYPE["run_requested"].model_dump(),
                                      "idempotency_key": ""}), "data.idempotency_key"),
    (lambda: payload(DriftDetected, **{**drift().model_dump(), "model": ""}), "data.model"),
    (lambda: payload(DriftDetected, **{**drift().model_dump(), "dataset_version": ""}),
     "data.dataset_version"),
], ids=["key that is not UTF-8", "empty idempotency key", "empty model", "empty version"])
def test_payload_refuses_what_decode_would_naming_the_field_in_the_envelope(
    build: Any, field: str
) -> None:
    with pytest.raises(EventParseError) as err:
        build()
    assert err.value.field == field


@pytest.mark.parametrize("number", NON_FINITE, ids=["nan", "inf", "-inf"])
def test_the_models_refuse_non_finite_numbers_where_they_are_made(number: float) -> None:
    # given/when: a score, a resource request and a metric that are not finite
    # then: each model refuses it on construction, naming the field
    with pytest.raises(EventParseError) as err:
        payload(DriftDetected, **{**drift().model_dump(), "score": number})
    assert (err.value.field, err.value.reason) == ("data.score", "Input should be a finite number")
    with pytest.raises(ValueError, match="finite number"):
        Resources(cpus=number)
    report = BY_TYPE["attempt_succeeded"]
    with pytest.raises(ValueError, match="finite number"):
        AttemptSucceeded(**{**report.model_dump(), "metrics": {"accuracy": number}})


@pytest.mark.parametrize("number", NON_FINITE, ids=["nan", "inf", "-inf"])
def test_free_form_params_and_payloads_refuse_non_finite_numbers_at_any_depth(
    number: float,
) -> None:
    # given a run request's params and a trigger's payload holding a non-finite number deep down
    request = BY_TYPE["run_requested"]
    params = {"grid": {"rates": [0.1, number]}}
    # when they are made, then refused naming the path (JSON would carry null instead)
    with pytest.raises(EventParseError) as err:
        payload(type(request), **{**request.model_dump(), "params": params})
    assert err.value.field == "data.params"
    assert "grid.rates[1] is" in err.value.reason
    trigger = BY_TYPE["run_requested"].trigger  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"score is .*JSON has no NaN"):
        type(trigger)(**{**trigger.model_dump(), "payload": {"score": number}})


def drift_json(score: str) -> bytes:
    """A drift event as JSON text with `score` spelled as given."""
    raw = encode(wrapped(drift(score=0.123456)))
    assert raw.count(b"0.123456") == 1
    return raw.replace(b"0.123456", score.encode())


@pytest.mark.parametrize("score", ["NaN", "Infinity", "-Infinity", "1e999", '"NaN"', '"inf"',
                                   "null"])
def test_decode_refuses_a_score_that_is_not_a_finite_number(score: str) -> None:
    # given a drift event whose score is NaN or infinite in any spelling JSON readers accept
    raw = drift_json(score)
    # when it is decoded, from Baton's envelope or as a binary-mode CloudEvent
    data = json.dumps(json.loads(raw)["data"]).encode()
    headers = [("ce_specversion", b"1.0"), ("ce_id", b"e1"), ("ce_source", b"/x"),
               ("ce_type", b"drift_detected"), ("content-type", b"application/json")]
    with pytest.raises(EventParseError) as baton_json:
        decode(raw)
    with pytest.raises(EventParseError) as cloudevent:
        decode_record(data, headers, timestamp_ms=0)
    # then both refuse it, naming the score
    assert baton_json.value.field == cloudevent.value.field == "data.score"


def test_a_finite_score_still_round_trips() -> None:
    raw = drift_json("0.5")
    env = decode(raw)
    assert isinstance(env.data, DriftDetected) and env.data.score == 0.5
    assert checked(env) == encode(env)

