"""Schemathesis against the app's own OpenAPI schema: generated valid and invalid requests for every
operation must never get a server error, every response must match the schema (status code, content
type, headers, body), and invalid input must be refused with a 4xx.

`make test` runs a smoke-sized, derandomized pass (~150 requests); `make fuzz` sets FUZZ_EXAMPLES and
FUZZ_MIN_REQUESTS for a random pass of at least 1,000. (Schemathesis's pytest plugin does not run
under pytest 9, so each operation gets its own Hypothesis run over `APIOperation.as_strategy`.)
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks
from schemathesis.config import SchemathesisConfig
from schemathesis.python.asgi import shutdown_lifespans

from finverse_reco.api.app import create_app

from .conftest import WRITER_KEY

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))  # per operation and mode
WRITER = {"X-API-Key": WRITER_KEY}
MIN_REQUESTS = int(os.environ.get("FUZZ_MIN_REQUESTS", "100"))
DEPTH_RUN = "FUZZ_EXAMPLES" in os.environ
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]
# Schemathesis's own list of statuses that count as refusing invalid data, plus 413: a generated
# batch over the size limit is refused for its size before its contents are read.
REJECTIONS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": [*REJECTIONS, "5xx"]}}}
)


@pytest.fixture(scope="module")
def api_schema(trained):
    """The schema served by a real app over the trained demo world; schemathesis drives the app
    in-process (ASGI) and runs its lifespan, so the model and the store are really there."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(trained), config=CONFIG)
    yield schema
    shutdown_lifespans()


def fuzz_operation(operation, mode: GenerationMode, sent: Counter) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=not DEPTH_RUN,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case) -> None:
        sent[operation.label] += 1
        # A writer's credential, so generated events reach the validation behind it (without
        # one, every write would stop at the 401).
        credentials = WRITER if operation.path == "/api/v1/interactions" else None
        case.call_and_validate(checks=CHECKS, headers=credentials)

    run()


def test_every_operation_honours_its_schema(api_schema):
    sent: Counter[str] = Counter()
    failures: dict[str, str] = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzz_operation(operation, mode, sent)
            except Unsatisfiable:
                # Nothing to make invalid (no inputs, or only a free-form header such as X-API-Key).
                assert mode is GenerationMode.NEGATIVE, operation.label
            # Check failures arrive as an exception group; collect all, then report them together.
            except (Exception, BaseExceptionGroup) as exc:
                failures[f"{operation.label} ({mode.value})"] = str(exc)[:3000]
    total = sum(sent.values())
    print(f"\nfuzz: {total} requests over {len(operations)} operations: {dict(sent)}")
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
    assert set(sent) == {operation.label for operation in operations}
    assert total >= MIN_REQUESTS, f"only {total} requests; at least {MIN_REQUESTS} wanted"


def test_the_checks_catch_a_response_that_breaks_the_schema(api_schema):
    """The harness itself: the checks must reject a response that does not fit the operation (here
    /health's body offered as a recommendation list), or a passing fuzz run would mean nothing."""
    operations = {result.ok().label: result.ok() for result in api_schema.get_all_operations()}
    similar = operations["GET /api/v1/recommendations/similar-products/{product_id}"]
    case = similar.Case(path_parameters={"product_id": "prod_0001"}, query={"limit": 5})
    assert case.call().status_code == 200
    health = operations["GET /health"].Case().call()
    assert health.status_code == 200
    with pytest.raises(BaseExceptionGroup, match="recommendations"):
        case.validate_response(health, checks=CHECKS)
