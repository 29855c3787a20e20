"""The OpenAPI document fuzzed with schemathesis against a running `baton up`: whatever a
client sends that the document allows (and much it does not), the API never answers 5xx, and
every error it answers is a problem document."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok

from tests.api.test_api_processes import served_url
from tests.e2e.support import Service

pytestmark = pytest.mark.e2e
QUICK = "tests.e2e.pipelines:quick_chain"
PROBLEM = "application/problem+json"
EXAMPLES = 25
"""Per operation and mode: ~20 operations, two modes, about a thousand requests in all."""
NOT_FUZZED = ("/api/v1/events",)
"""The stream is a long-lived response (its long-poll twin waits up to a minute): its own
suite covers it."""


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    where = tmp_path_factory.mktemp("fuzz")
    up = Service.start(where / "home", [QUICK], where / "up.log")
    try:
        yield served_url(up)
        assert up.stop(signal.SIGTERM) == 0
    finally:
        up.reap()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_request_gets_a_server_error_and_every_error_is_a_problem_document(
    running: str, mode: GenerationMode,
) -> None:
    # given the API's own OpenAPI document (the stream left out: NOT_FUZZED)
    api = schemathesis.openapi.from_url(f"{running}/openapi.json").exclude(
        path=list(NOT_FUZZED))
    base = running.removesuffix("/api/v1")
    operations = [result.ok() for result in api.get_all_operations()
                  if isinstance(result, Ok)]
    assert len(operations) >= 15

    # when every operation gets requests generated from it (valid ones, then invalid ones)
    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def call(case: Case[Any]) -> None:
            if case.method == "POST":  # a write waits briefly for a coordinator's answer
                case.query = {**(case.query or {}), "wait": 1}
            response = case.call(base_url=base, timeout=30)
            # then no 5xx, and each error a problem document saying what is wrong
            case.validate_response(response, checks=[not_a_server_error])
            if response.status_code >= 400:
                assert response.headers.get("content-type") == [PROBLEM], (
                    case.as_curl_command(), response.text)
                doc = response.json()
                assert doc["status"] == response.status_code and doc["detail"], doc
                assert "Traceback" not in response.text

        try:
            call()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # an operation without parameters has no
            # invalid request to make
