"""Partners through HTTP: the list with contract validity, what each partner was notified of
and owes, and a repeated acknowledgement that confirms without writing anything."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

from fastapi.testclient import TestClient

from rightsledger.bootstrap import Container
from rightsledger.security.keys import Role
from tests.e2e.conftest import customer_body, ok
from tests.e2e.service import wait_until

Headers = Callable[[Role | str], dict[str, str]]



def contracted(name: str, valid_until: date) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "support_provider",
        "contract_reference": f"C-{name}",
        "confidentiality_agreement": "NDA",
        "contract_valid_until": valid_until.isoformat(),
    }


def test_partners_are_listed_by_name_with_their_contracts_validity_paged(
    api: TestClient, headers: Headers
) -> None:
    """Each partner with its kind, the date its contract is valid until and whether it is
    valid today; pages of the shared cursor shape with a Link header; roles that may not
    read partners are refused."""
    admin = headers(Role.ADMIN)
    today = date.today()
    ok(api.post("/v1/partners", headers=admin, json=contracted("Beta", today)), 201)
    ok(
        api.post(
            "/v1/partners", headers=admin, json=contracted("Alpha", today - timedelta(days=1))
        ),
        201,
    )
    last = ok(
        api.post("/v1/partners", headers=admin, json={"name": "Gamma", "kind": "authority"}),
        201,
    )
    officer = headers(Role.PRIVACY_OFFICER)
    first = api.get(f"/v1/partners?limit=2&min_position={last['position']}", headers=officer)
    page = ok(first)
    assert [(p["name"], p["kind"], p["contract_valid_today"]) for p in page["items"]] == [
        ("Alpha", "support_provider", False),  # expired yesterday
        ("Beta", "support_provider", True),  # valid until the end of today
    ]
    assert page["items"][1]["contract_valid_until"] == today.isoformat()
    assert page["position"] >= last["position"]
    assert page["next_cursor"]
    link = first.headers["Link"]
    assert link.endswith('; rel="next"')
    rest = ok(api.get(link.split(">")[0].lstrip("<"), headers=officer))
    assert [(p["name"], p["contract_valid_until"]) for p in rest["items"]] == [("Gamma", None)]
    assert rest["next_cursor"] is None
    assert not rest["items"][0]["contract_valid_today"]
    assert api.get("/v1/partners", headers=headers(Role.INTAKE)).status_code == 403
    assert api.get("/v1/partners", headers=headers(Role.PARTNER)).status_code == 403


def test_a_partner_sees_what_it_owes_and_a_repeated_acknowledgement_confirms(
    api: TestClient, headers: Headers, working: Container
) -> None:
    """A partner's own key lists its notifications (request, categories, when notified, the
    request's due date) by status; another partner's key is refused and an unknown partner
    is 404. Acknowledging twice answers 200 both times and writes nothing the second time,
    also once the last acknowledgement has fulfilled the request."""
    admin = headers(Role.ADMIN)
    customer = ok(api.post("/v1/customers", headers=admin, json=customer_body()), 201)[
        "customer_id"
    ]
    valid = date.today() + timedelta(days=365)
    helpdesk = ok(api.post("/v1/partners", headers=admin, json=contracted("Helpdesk", valid)), 201)
    helpdesk_id = helpdesk["partner_id"]
    police_id = ok(
        api.post("/v1/partners", headers=admin, json={"name": "Police", "kind": "law_enforcement"}),
        201,
    )["partner_id"]
    for partner, basis, purpose, categories in (
        (helpdesk_id, "service_provider", "support", ["identity_contact", "account_service"]),
        (police_id, "legal_obligation", "legal", ["identity_contact"]),
    ):
        ok(
            api.post(
                f"/v1/customers/{customer}/disclosures",
                headers=admin,
                json={
                    "partner_id": partner,
                    "basis": basis,
                    "categories": categories,
                    "purpose": purpose,
                    "reference": "ref",
                },
            ),
            201,
        )
    correction = ok(
        api.post(
            "/v1/requests",
            headers=admin,
            json={
                "customer_id": customer,
                "type": "correction",
                "channel": "email",
                "jurisdiction": "gdpr",
                "statement": "My plan is wrong",
                "corrections": {"account_service": {"plan": "fibre-1000"}},
            },
        ),
        202,
    )["request_id"]
    ok(
        api.post(
            f"/v1/requests/{correction}/verify",
            headers=admin,
            json={"method": "id_document", "reference": "r"},
        )
    )
    wait_until(
        lambda: ok(api.get(f"/v1/requests/{correction}", headers=admin))["status"] == "fulfilled",
        20,
        "the correction to be fulfilled",
    )
    deletion = ok(
        api.post(
            "/v1/requests",
            headers=admin,
            json={
                "customer_id": customer,
                "type": "deletion",
                "channel": "postal_mail",
                "jurisdiction": "gdpr",
                "document_reference": "letter 7",
            },
        ),
        202,
    )
    deletion_id = deletion["request_id"]
    ok(
        api.post(
            f"/v1/requests/{deletion_id}/verify",
            headers=admin,
            json={"method": "id_document", "reference": "r"},
        )
    )
    _, token = working.keys.create(Role.PARTNER, "helpdesk", partner_id=UUID(helpdesk_id))
    as_helpdesk = {"Authorization": f"Bearer {token}"}

    def awaiting() -> list[dict[str, Any]]:
        page = ok(
            api.get(
                f"/v1/partners/{helpdesk_id}/notifications?status=awaiting", headers=as_helpdesk
            )
        )
        items: list[dict[str, Any]] = page["items"]
        return items

    owed = wait_until(awaiting, 20, "the deletion notice in the helpdesk's list")
    assert len(owed) == 1
    notice = owed[0]
    assert notice["request_id"] == deletion_id
    assert notice["request_type"] == "deletion"
    assert notice["categories"] == ["account_service", "identity_contact"]
    assert datetime.fromisoformat(notice["due_at"]) == datetime.fromisoformat(deletion["due_at"])
    assert datetime.fromisoformat(notice["notified_at"]) <= datetime.now(UTC)
    assert notice["acknowledged_at"] is None
    everything = ok(api.get(f"/v1/partners/{helpdesk_id}/notifications", headers=as_helpdesk))
    assert {(n["request_id"], n["status"]) for n in everything["items"]} == {
        (correction, "informed"),
        (deletion_id, "awaiting"),
    }
    paged = api.get(f"/v1/partners/{helpdesk_id}/notifications?limit=1", headers=as_helpdesk)
    assert len(ok(paged)["items"]) == 1
    rest = ok(api.get(paged.headers["Link"].split(">")[0].lstrip("<"), headers=as_helpdesk))
    assert len(rest["items"]) == 1
    assert rest["next_cursor"] is None
    assert {ok(paged)["items"][0]["request_id"], rest["items"][0]["request_id"]} == {
        correction,
        deletion_id,
    }

    other = api.get(f"/v1/partners/{police_id}/notifications", headers=as_helpdesk)
    assert other.status_code == 403
    officer = headers(Role.PRIVACY_OFFICER)
    police = ok(api.get(f"/v1/partners/{police_id}/notifications?status=awaiting", headers=officer))
    assert [n["categories"] for n in police["items"]] == [["identity_contact"]]
    unknown = api.get(f"/v1/partners/{UUID(int=7)}/notifications", headers=officer)
    assert unknown.status_code == 404
    assert (
        api.get(
            f"/v1/partners/{police_id}/notifications", headers=headers(Role.SUPPORT)
        ).status_code
        == 403
    )

    def acknowledge(partner: str, auth: dict[str, str]) -> Any:
        return api.post(
            f"/v1/partners/{partner}/acknowledgements",
            headers=auth,
            json={"request_id": deletion_id},
        )

    first = ok(acknowledge(helpdesk_id, as_helpdesk))
    assert first["status"] == "in_progress"
    head = working.ledger.recorder.max_notification_id()
    again = ok(acknowledge(helpdesk_id, as_helpdesk))
    assert {k: again[k] for k in ("request_id", "status", "due_at")} == {
        k: first[k] for k in ("request_id", "status", "due_at")
    }
    assert again["position"] >= first["position"]
    assert working.ledger.recorder.max_notification_id() == head  # nothing written
    done = ok(
        api.get(
            f"/v1/partners/{helpdesk_id}/notifications?status=acknowledged&min_position={first['position']}",
            headers=as_helpdesk,
        )
    )
    assert [n["request_id"] for n in done["items"]] == [deletion_id]
    assert done["items"][0]["acknowledged_at"] is not None
    assert (
        ok(
            api.get(
                f"/v1/partners/{helpdesk_id}/notifications?status=awaiting&min_position={first['position']}",
                headers=as_helpdesk,
            )
        )["items"]
        == []
    )

    last = ok(acknowledge(police_id, officer))
    assert last["status"] == "fulfilled"
    head = working.ledger.recorder.max_notification_id()
    repeat = ok(acknowledge(police_id, officer))
    assert repeat["status"] == "fulfilled"
    assert {k: repeat[k] for k in ("request_id", "due_at")} == {
        k: last[k] for k in ("request_id", "due_at")
    }
    assert working.ledger.recorder.max_notification_id() == head
    late = ok(acknowledge(helpdesk_id, as_helpdesk))  # the first partner, after fulfilment
    assert late["status"] == "fulfilled"
    never = api.post(
        f"/v1/partners/{police_id}/acknowledgements",
        headers=officer,
        json={"request_id": correction},
    )
    assert never.status_code == 409  # a correction asks for no acknowledgement
