"""Input hardening through HTTP: identifiers never taken for card numbers, card numbers in
any shape refused naming the field without echoing it, body limits for streamed bodies,
malformed and misshapen JSON, and the OpenAPI document's vocabularies and access rules."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rightsledger.api.app import create_app
from rightsledger.bootstrap import build
from rightsledger.domain.values import Basis, Channel, Purpose, RequestChannel, RequestStatus
from rightsledger.security.keys import Role
from rightsledger.storage.database import Database
from tests.conftest import make_settings
from tests.e2e.conftest import customer_body, request_body
from tests.e2e.service import Service
from tests.e2e.test_access_control import MATRIX, PUBLIC
from tests.e2e.test_api import assert_problem, head, new_customer

FLAGGED_BEFORE = "abcdef00-4111-1111-1111-1111abcdefab"
"""A UUID whose digits, hyphen by hyphen, the former rule took for a card number."""

CARD = "4111111111111111"
fixture_ok = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def shapes(number: str = CARD) -> list[str]:
    """The same card number written in the shapes people use."""
    fours = [number[i : i + 4] for i in range(0, len(number), 4)]
    full_width = "".join(chr(0xFF10 + int(d)) if d.isdigit() else d for d in " ".join(fours))
    return [
        " ".join(fours),
        ".".join(fours),
        "/".join(fours),
        "_".join(fours),
        "\t".join(fours),
        "  ".join(fours),
        " - ".join(fours),
        full_width,
        number,
    ]


# ------------------------------------------------------------- identifiers are never scanned


@fixture_ok
@given(st.uuids(), st.uuids())
def test_no_uuid_as_an_id_is_ever_refused(
    client: TestClient, admin: dict[str, str], customer_id: UUID, partner_id: UUID
) -> None:
    """Ids in real request bodies are never refused as card numbers: a request for an
    unknown customer, a share with an unknown partner and an acknowledgement of an unknown
    request are 404, whatever digits the ids hold."""
    asked = client.post("/v1/requests", json=request_body(str(customer_id)), headers=admin)
    assert assert_problem(asked, 404)["type"] != "/problems/card-number"
    registered = new_customer(client, admin)
    share = {
        "partner_id": str(partner_id),
        "basis": "service_provider",
        "categories": ["billing"],
        "purpose": "billing",
    }
    shared = client.post(f"/v1/customers/{registered}/disclosures", json=share, headers=admin)
    assert "partner" in assert_problem(shared, 404)["detail"]
    acknowledged = client.post(
        f"/v1/partners/{partner_id}/acknowledgements",
        json={"request_id": str(customer_id)},
        headers=admin,
    )
    assert assert_problem(acknowledged, 404)["type"] != "/problems/card-number"


def test_ids_the_former_rule_refused_are_accepted(
    client: TestClient, admin: dict[str, str]
) -> None:
    """Partner and customer ids the former rule refused reach the rules that apply to them:
    an unknown partner is 404, an unknown customer 404, never a card-number refusal."""
    customer_id = new_customer(client, admin)
    share = {
        "partner_id": FLAGGED_BEFORE,
        "basis": "service_provider",
        "categories": ["billing"],
        "purpose": "billing",
    }
    shared = client.post(f"/v1/customers/{customer_id}/disclosures", json=share, headers=admin)
    assert assert_problem(shared, 404)["type"] != "/problems/card-number"
    asked = client.post("/v1/requests", json=request_body(FLAGGED_BEFORE), headers=admin)
    assert assert_problem(asked, 404)["type"] != "/problems/card-number"


def test_an_unknown_jurisdiction_is_refused_without_echoing_it(
    client: TestClient, admin: dict[str, str]
) -> None:
    """A jurisdiction is an identifier (never scanned for card numbers); one with no
    configured deadline is refused with 422 naming the field and the known ones, and the
    answer never repeats what was sent, even when it is a card number."""
    customer_id = new_customer(client, admin)
    before = head(client)
    asked = client.post(
        "/v1/requests", json=request_body(customer_id, jurisdiction=CARD), headers=admin
    )
    problem = assert_problem(asked, 422)
    assert problem["field"] == "jurisdiction"
    assert "gdpr" in problem["detail"]
    assert CARD not in asked.text
    assert head(client) == before


# ------------------------------------------------------- card numbers in any shape, refused


@pytest.mark.parametrize("written", shapes())
def test_card_numbers_in_every_shape_are_refused_naming_the_field(
    client: TestClient, admin: dict[str, str], written: str
) -> None:
    """A card number in a nested field, in any common shape, refuses the command with 422
    naming the field path (``identity.name``); the answer never holds the number."""
    before = head(client)
    body = customer_body(identity={"name": f"Bob {written}", "email": "bob@example.org"})
    response = client.post("/v1/customers", json=body, headers=admin)
    problem = assert_problem(response, 422)
    assert problem["type"] == "/problems/card-number"
    assert problem["field"] == "identity.name"
    assert "identity.name" in problem["detail"]
    assert written not in response.text
    assert "1111" not in response.text
    assert "\uff11" * 4 not in response.text  # nor in full-width digits
    assert head(client) == before


def test_nested_paths_are_named_as_the_api_names_fields(
    client: TestClient, admin: dict[str, str]
) -> None:
    """Corrections name their path (``corrections.identity_contact.name``), a PATCH its
    category (``identity_contact.postal_address``); a card number used as a key is redacted."""
    customer_id = new_customer(client, admin)
    asked = client.post(
        "/v1/requests",
        json=request_body(
            customer_id,
            type="correction",
            corrections={"identity_contact": {"name": "4111.1111.1111.1111"}},
        ),
        headers=admin,
    )
    assert assert_problem(asked, 422)["field"] == "corrections.identity_contact.name"
    patched = client.patch(
        f"/v1/customers/{customer_id}",
        json={"identity_contact": {"postal_address": "4111/1111/1111/1111"}},
        headers=admin,
    )
    assert assert_problem(patched, 422)["field"] == "identity_contact.postal_address"
    as_key = client.post(
        "/v1/customers", json={**customer_body(), "4111 1111 1111 1111": "x"}, headers=admin
    )
    problem = assert_problem(as_key, 422)
    assert "1111" not in as_key.text
    assert problem["errors"][0]["field"] == "[redacted]"


def test_phone_numbers_dates_and_references_are_accepted(
    client: TestClient, admin: dict[str, str]
) -> None:
    """Ordinary numbers in text and personal values are not card numbers."""
    body = customer_body(
        identity={
            "name": "Chen Wei",
            "phone": "+8613800138000",
            "postal_address": "Flat 2026-01-15, IBAN DE89 3704 0044 0532 0130 00",
        }
    )
    assert client.post("/v1/customers", json=body, headers=admin).status_code == 201


# -------------------------------------------------------------------- bodies and JSON errors


def test_a_chunked_body_over_the_limit_answers_413(
    client: TestClient, admin: dict[str, str]
) -> None:
    """A streamed body (no Content-Length) over max_body_bytes is refused with 413 as soon
    as it passes the limit, like one that declares its length; nothing is written."""
    before = head(client)

    def chunks() -> Iterator[bytes]:
        yield b'{"policy_version": "'
        for _ in range(40):
            yield b"x" * 50_000
        yield b'"}'

    streamed = client.post(
        "/v1/customers", content=chunks(), headers={**admin, "content-type": "application/json"}
    )
    problem = assert_problem(streamed, 413)
    assert problem["type"] == "/problems/body-too-large"
    declared = client.post(
        "/v1/customers",
        content=b"{" + b" " * 70_000 + b"}",
        headers={**admin, "content-type": "application/json"},
    )
    assert_problem(declared, 413)
    keyed = client.post(
        "/v1/customers",
        content=chunks(),
        headers={**admin, "content-type": "application/json", "Idempotency-Key": "big-1"},
    )
    assert_problem(keyed, 413)
    assert head(client) == before


def test_malformed_json_names_the_line_and_column(
    client: TestClient, admin: dict[str, str]
) -> None:
    """Broken JSON answers 422 with the line and column of the error, not an offset."""
    broken = client.post(
        "/v1/customers",
        content=b'{\n  "policy_version": "2026-01",\n  "identity": {"name": "Ada",}\n}',
        headers={**admin, "content-type": "application/json"},
    )
    problem = assert_problem(broken, 422)
    assert problem["type"] == "/problems/malformed-json"
    assert (problem["line"], problem["column"]) == (3, 30)  # as json.loads counts them
    assert "line 3, column 30" in problem["detail"]
    assert problem["errors"][0]["field"] == ""


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"policy_version": "2026-01", "identity": {"name": "\xff\xfe"}}', "not UTF-8"),
        (b"[" * 30_000 + b"]" * 30_000, "too deeply"),
    ],
)
def test_json_the_parser_cannot_read_is_malformed_json(
    client: TestClient, admin: dict[str, str], content: bytes, reason: str
) -> None:
    """A body that is not UTF-8, or nests deeper than the JSON parser goes, answers 422
    malformed-json saying which, as any other unreadable JSON does (not a bare 400), and
    nothing is written."""
    before = head(client)
    answer = client.post(
        "/v1/customers", content=content, headers={**admin, "content-type": "application/json"}
    )
    problem = assert_problem(answer, 422)
    assert problem["type"] == "/problems/malformed-json"
    assert reason in problem["detail"]
    assert head(client) == before


@pytest.mark.parametrize(
    ("body", "kind"), [([1, 2], "an array"), ("text", "a string"), (3, "a number")]
)
def test_a_body_that_is_not_an_object_is_named(
    client: TestClient, admin: dict[str, str], body: Any, kind: str
) -> None:
    """A JSON array (or string, or number) where an object is expected says so."""
    problem = assert_problem(client.post("/v1/customers", json=body, headers=admin), 422)
    assert problem["detail"] == f"the body must be a JSON object, not {kind}"


def test_a_missing_or_non_json_body_is_named(client: TestClient, admin: dict[str, str]) -> None:
    """A route that needs a body says so when none is sent, and asks for JSON when the body
    is sent as something else."""
    missing = client.post(f"/v1/requests/{FLAGGED_BEFORE}/verify", headers=admin)
    assert assert_problem(missing, 422)["detail"] == "this operation needs a JSON object body"
    as_text = client.post(
        "/v1/customers", content=b"{}", headers={**admin, "content-type": "text/plain"}
    )
    assert "Content-Type: application/json" in assert_problem(as_text, 422)["detail"]


def test_revoke_without_a_body_is_revoke_with_an_empty_one(
    client: TestClient, admin: dict[str, str]
) -> None:
    """The reason is optional, so the body is too: no body revokes as ``{}`` does."""
    customer_id = new_customer(client, admin)
    first = client.post("/v1/requests", json=request_body(customer_id), headers=admin)
    second = client.post(
        "/v1/requests", json=request_body(customer_id, type="deletion"), headers=admin
    )
    assert first.status_code == second.status_code == 202, first.text + second.text
    bare = client.post(f"/v1/requests/{first.json()['request_id']}/revoke", headers=admin)
    assert bare.status_code == 200, bare.text
    assert bare.json()["status"] == "revoked"
    empty = client.post(
        f"/v1/requests/{second.json()['request_id']}/revoke", json={}, headers=admin
    )
    assert empty.status_code == 200, empty.text
    assert empty.json()["status"] == "revoked"


def test_a_chunked_body_over_the_limit_answers_413_from_the_real_server(
    start_service: Callable[..., Service],
) -> None:
    """Through uvicorn: a 2 MB body sent chunked (no Content-Length) answers 413, the
    documented refusal, and the server keeps answering."""
    service = start_service("api", run_followers=False)

    def chunks() -> Iterator[bytes]:
        yield b'{"policy_version": "'
        for _ in range(32):
            yield b"x" * 65_536
        yield b'"}'

    with service.client() as http:
        request = http.build_request(
            "POST",
            "/v1/customers",
            content=chunks(),
            headers={"content-type": "application/json"},
        )
        assert "content-length" not in request.headers
        assert request.headers["transfer-encoding"] == "chunked"
        response = http.send(request)
        assert response.status_code == 413, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["type"] == "/problems/body-too-large"
        assert http.get("/health").status_code == 200


# --------------------------------------------------------------------------- the OpenAPI


@pytest.fixture
def configured(database: Database, schema: str) -> Iterator[TestClient]:
    """The API with jurisdictions of its own and a role allowed fewer purposes."""
    jurisdictions = {
        "lgpd": {"respond_within": {"days": 15}, "extension": {"days": 15}},
        "gdpr": {"respond_within": {"months": 1}, "extension": {"months": 2}},
    }
    container = build(
        make_settings(
            database, schema, jurisdictions=jurisdictions, role_purposes={"support": ["support"]}
        ),
        database=database,
    )
    try:
        with TestClient(create_app(container)) as test_client:
            yield test_client
    finally:
        container.close()


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def enum_of(document: dict[str, Any], model: str, prop: str) -> list[str]:
    found = resolve(document, document["components"]["schemas"][model]["properties"][prop])
    if "items" in found:
        found = resolve(document, found["items"])
    for option in found.get("anyOf", []):
        option = resolve(document, option)
        if "enum" in option:
            return list(option["enum"])
    return list(found["enum"])


def test_the_openapi_lists_every_vocabulary(configured: TestClient) -> None:
    """Purposes, bases, channels, the configured jurisdictions, roles and statuses are enums
    in the OpenAPI document."""
    document = configured.get("/openapi.json").json()
    assert enum_of(document, "RequestIn", "jurisdiction") == ["gdpr", "lgpd"]
    assert enum_of(document, "RequestIn", "channel") == [c.value for c in RequestChannel]
    assert enum_of(document, "DisclosureIn", "basis") == [b.value for b in Basis]
    assert set(enum_of(document, "DisclosureIn", "purpose")) == set(Purpose) - {"marketing"}
    assert enum_of(document, "ConsentChange", "channel") == [c.value for c in Channel]
    assert enum_of(document, "CategoryOut", "purposes") == [p.value for p in Purpose]
    assert enum_of(document, "DisclosureOut", "basis") == [b.value for b in Basis]
    assert enum_of(document, "RequestOut", "status") == [s.value for s in RequestStatus]
    assert enum_of(document, "RequestOut", "channel") == [c.value for c in RequestChannel]
    assert document["components"]["schemas"]["Role"]["enum"] == [r.value for r in Role]
    profile = document["paths"]["/v1/customers/{customer_id}"]["get"]
    header = next(p for p in profile["parameters"] if p["name"] == "X-Purpose")
    assert header["schema"]["enum"] == [p.value for p in Purpose]
    listing = document["paths"]["/v1/requests"]["get"]
    status = next(p for p in listing["parameters"] if p["name"] == "status")
    statuses = [s.value for s in RequestStatus]
    repeatable = status["schema"]["anyOf"][0]  # ?status= may be repeated: a list of them
    assert repeatable["type"] == "array"
    assert resolve(document, repeatable["items"])["enum"] == statuses


def test_every_operation_says_who_may_call_it(configured: TestClient) -> None:
    """Each operation's description names the roles its gate admits (and ``x-roles`` lists
    them); reads of personal data list the purposes each role may declare, as configured."""
    document = configured.get("/openapi.json").json()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert "**Roles:**" in operation["description"], (method, path)
    register = document["paths"]["/v1/customers"]["post"]
    assert register["x-roles"] == ["admin", "intake"]
    assert "**Roles:** admin, intake." in register["description"]
    profile = document["paths"]["/v1/customers/{customer_id}"]["get"]
    assert profile["x-purposes"]["support"] == ["support"]
    assert profile["x-purposes"]["admin"] == []
    assert "support: support" in profile["description"]
    export = document["paths"]["/v1/requests/{request_id}/export"]["get"]
    assert export["x-roles"] == ["admin", "privacy_officer"]
    assert "serves legal only" in export["description"]
    assert document["paths"]["/health"]["get"]["description"].endswith("anyone; no key.")


def test_the_roles_in_the_openapi_are_the_roles_the_routes_admit(client: TestClient) -> None:
    """``x-roles`` of every operation is the route-by-role matrix that the access-control
    tests exercise (plus admin); public routes have none."""
    document = client.get("/openapi.json").json()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            route = (method.upper(), path)
            if route in PUBLIC:
                assert "x-roles" not in operation, route
            else:
                assert operation["x-roles"] == sorted({*MATRIX[route], "admin"}), route


def test_every_keyed_operation_declares_the_bearer_scheme(client: TestClient) -> None:
    """The OpenAPI document declares the bearer scheme and every operation that takes a key
    names it (Swagger UI's Authorize button), gated or not; public routes name none."""
    document = client.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["HTTPBearer"]["type"] == "http"
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    for path, item in document["paths"].items():
        for method, operation in item.items():
            route = (method.upper(), path)
            if route in PUBLIC:
                assert "security" not in operation, route
            else:
                assert operation["security"] == [{"HTTPBearer": []}], route


# ------------------------------------------------------------------ loose or future values


def test_consent_takes_only_a_json_boolean_and_evidence_already_captured(
    client: TestClient, admin: dict[str, str]
) -> None:
    """`granted` is true or false, never "yes" or 1; evidence captured in the future, an
    invoice issued in the future and activity that has not happened are refused with 422
    naming the field, and nothing is written."""
    customer_id = new_customer(client, admin)
    evidence = {"method": "web_form_checkbox", "wording_version": "mkt-v3"}
    past = {**evidence, "captured_at": "2026-11-01T10:00:00Z"}
    future = {**evidence, "captured_at": "2099-12-01T10:00:00Z"}
    before = head(client)
    refusals: list[tuple[str, dict[str, Any], str]] = [
        ("consents", {"channel": "email", "granted": "yes", "evidence": past}, "granted"),
        ("consents", {"channel": "email", "granted": 1, "evidence": past}, "granted"),
        (
            "consents",
            {"channel": "email", "granted": True, "evidence": future},
            "evidence.captured_at",
        ),
        (
            "invoices",
            {"amount": "10.00", "currency": "EUR", "issued_at": "2099-01-01T00:00:00Z"},
            "issued_at",
        ),
        (
            "activity",
            {
                "kind": "network",
                "reason": "troubleshooting",
                "detail": "line test",
                "occurred_at": "2099-01-01T00:00:00Z",
            },
            "occurred_at",
        ),
    ]
    for resource, body, field in refusals:
        answer = client.post(f"/v1/customers/{customer_id}/{resource}", json=body, headers=admin)
        problem = assert_problem(answer, 422)
        named = problem.get("field") or ",".join(e["field"] for e in problem.get("errors", []))
        assert field in named, (resource, body, problem)
    assert head(client) == before
    granted = client.post(
        f"/v1/customers/{customer_id}/consents",
        json={"channel": "email", "granted": True, "evidence": past},
        headers=admin,
    )
    assert granted.status_code == 200, granted.text
