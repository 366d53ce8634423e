"""Contract tests: schemathesis generates requests (valid and invalid) from the OpenAPI schema the code
publishes and sends them, authenticated with a real API key, to the real Django application (WSGI, real
PostgreSQL and Redis). Every response must be free of server errors and conform to the schema (status code,
content type, body, headers), and invalid requests must be refused. Bounded and derandomized, so CI sees the
same cases every run.

``positive_data_acceptance`` is left out: a schema-valid upload is any bytes, and random bytes are rightly
refused as INVALID_FORMAT (415); OpenAPI cannot say "a decodable audio file".

The operations are driven with Hypothesis directly (schemathesis' pytest plugin does not run on pytest 9's
subtests yet); every operation is tried in both generation modes and all failures are reported together.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from audioseal_site.wsgi import application

pytestmark = pytest.mark.django_db(transaction=True)  # the WSGI handler closes connections per request

# Per operation and mode. CI keeps it small; a deeper local run: SCHEMATHESIS_EXAMPLES=200 pytest <this file>.
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "12"))


def run_operation(operation, mode: GenerationMode, headers: dict[str, str]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case) -> None:
        case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

    check()


def test_api_conforms_to_its_schema(api_key, redis_clean, settings):
    settings.MAX_WAIT_SECONDS = 1  # ?wait is capped: a generated wait must not hold the suite
    schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
    headers = {"Authorization": f"Bearer {api_key.secret}"}
    failures, tried = [], []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            tried.append(f"{operation.method.upper()} {operation.path} ({mode.value})")
            try:
                run_operation(operation, mode, headers)
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect all, report together
                failures.append(f"{tried[-1]}:\n{exc}")
    assert len(tried) >= 12, tried  # the jobs and billing endpoints are in the schema
    assert not failures, "\n\n".join(failures)
