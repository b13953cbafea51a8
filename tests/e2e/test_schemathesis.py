"""Property-based abuse of the live API from its own OpenAPI document (schemathesis).

Every operation gets a bounded number of generated requests, authenticated as admin
(with a declared purpose): no response may be a 5xx, and every response must match
the documented status codes, content types and schemas.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import checks
from schemathesis.core.result import Err

from rightsledger.api.app import create_app
from rightsledger.bootstrap import build
from rightsledger.storage.database import Database
from tests.conftest import ADMIN_KEY, make_settings

EXAMPLES = 25
# What the service promises for any input: no server error, documented status codes and
# content types, bodies matching their schemas, bad input refused. Schema-valid input may
# still be refused by a policy rule (a marketing purpose, an unknown id), so acceptance of
# every schema-valid request is not one of them.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]


@pytest.fixture
def patient_client(database: Database, schema: str) -> Iterator[TestClient]:
    """The API with a long read-your-writes wait, so a busy machine cannot cause a 503."""
    settings = make_settings(
        database, schema, run_projections=True, read_wait_seconds=20, auth_failures_allowed=1000
    )
    container = build(settings, database=database)
    try:
        with TestClient(create_app(container)) as client:
            yield client
    finally:
        container.close()


def test_no_5xx_and_every_response_matches_the_schema(patient_client: TestClient) -> None:
    """Generated requests never crash the service and always get documented answers."""
    client = patient_client
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            pytest.fail(f"an operation of the schema cannot be tested: {result.err()}")
        operations.append(result.ok())
    assert len(operations) >= 25
    auth = {"Authorization": f"Bearer {ADMIN_KEY}", "X-Purpose": "legal"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        def exercise(case: Any) -> None:
            case.headers = {**(case.headers or {}), **auth}
            case.call_and_validate(checks=CHECKS)

        exercise()
