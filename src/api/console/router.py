"""The console's pages: sign-in, inbox, requests, intake, customers, partners, audit.

Every page calls the API's own route functions (``api/routers/*``) or the views they read,
with the signed-in operator's principal, so the console adds no rule of its own: the same
roles (``gates.may``, read from the routes' gates), the same purposes, the same records of
who read what. A page or button a role may not use is not rendered, and the route behind
it refuses the role anyway (403).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from rightsledger.api import schemas as s
from rightsledger.api.console.gates import may
from rightsledger.api.console.sessions import ConsoleSessions, Session
from rightsledger.api.deps import ContainerDep, ReadFrom, ViewRead, authenticate
from rightsledger.api.offload import OffloadedRoute
from rightsledger.api.problems import ApiProblemError, domain_status
from rightsledger.api.routers import audit, customers, health, partners, requests
from rightsledger.bootstrap import Container
from rightsledger.domain.errors import DomainError
from rightsledger.domain.ledger import RightsLedger
from rightsledger.domain.values import Purpose, RequestChannel, RequestStatus, RequestType
from rightsledger.projections.partners import NoticeStatus
from rightsledger.security.keys import Principal

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
STATIC = {
    "htmx.min.js": "text/javascript",
    "console.css": "text/css",
    "favicon.svg": "image/svg+xml",
}

COOKIE = "rl_console"
"""The session cookie (a random token; the server keeps its digest)."""
SIGN_IN_COOKIE = "rl_console_sign_in"
"""The sign-in form's CSRF token (double submit: cookie and hidden field must match)."""
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN = frozenset({RequestStatus.OPEN.value, RequestStatus.IN_PROGRESS.value})

CONSOLE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""The console's pages run only the console's own script and stylesheet, post only to the
console, and are framed by nothing. A letter answered through the console keeps the letter's
own, stricter policy (it loads and runs nothing)."""

SECURITY_HEADERS = {
    "Content-Security-Policy": CONSOLE_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class ConsoleRoute(OffloadedRoute):
    """A console route: its answers carry the console's security headers unless they set
    their own (a letter's Content-Security-Policy)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handler(request: Request) -> Response:
            response: Response = await handle(request)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return handler


router = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)

T = TypeVar("T")


# -- sessions and CSRF ---------------------------------------------------------------------


def session_store(container: Container) -> ConsoleSessions:
    return ConsoleSessions(container.pool, container.settings.database_schema)


def _to_sign_in(request: Request) -> HTTPException:
    """A page goes to the sign-in page (303); an htmx request (a poll, a button) is answered
    401 with ``HX-Redirect``, which htmx follows with the whole page."""
    where = "/console/sign-in"
    if is_htmx(request):
        return HTTPException(401, "sign in first", headers={"HX-Redirect": where})
    return HTTPException(303, "sign in first", headers={"Location": where})


def current_session(request: Request, container: ContainerDep) -> Session:
    """The signed-in operator, or a redirect to the sign-in page."""
    session = session_store(container).find(request.cookies.get(COOKIE))
    if session is None:
        raise _to_sign_in(request)
    return session


async def checked_session(
    request: Request, session: Annotated[Session, Depends(current_session)]
) -> Session:
    """The session of a state-changing request, which must carry the session's CSRF token
    (the form's hidden field, or the header htmx sends)."""
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER)
        if sent is None:
            form = await request.form()
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
        if not session.csrf_matches(sent):
            raise HTTPException(403, "the form's CSRF token is missing or wrong; reload the page")
    return session


Viewer = Annotated[Session, Depends(current_session)]
Writer = Annotated[Session, Depends(checked_session)]


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


# -- rendering -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """Why an action was refused, as the API would have answered it."""

    status: int
    title: str
    detail: str


def attempt(call: Callable[[], T]) -> tuple[T | None, Problem | None]:
    """Run an API route function; its refusal as a :class:`Problem` instead of an error."""
    try:
        return call(), None
    except DomainError as error:
        return None, Problem(domain_status(error), error.title, error.detail)
    except ApiProblemError as error:
        return None, Problem(error.status, error.title, error.detail)
    except ValidationError as error:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}" for e in error.errors()
        )
        return None, Problem(422, "Invalid form", detail)


def nav(principal: Principal) -> list[tuple[str, str]]:
    """The pages the operator's role may use, as (path, label)."""
    links = []
    if may(principal, requests.list_requests):
        links.append(("/console/inbox", "Inbox"))
    if may(principal, requests.submit_request):
        links.append(("/console/requests/new", "Record a request"))
    if any(
        may(principal, f)
        for f in (customers.get_customer, customers.get_consents, customers.customer_disclosures)
    ):
        links.append(("/console/customers", "Customers"))
    if may(principal, partners.get_partner):
        links.append(("/console/partners", "Partners"))
    if may(principal, audit.global_trail):
        links.append(("/console/audit", "Audit"))
    return links


def render(
    request: Request,
    name: str,
    session: Session | None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    context.setdefault("problem", None)
    if session is not None:
        context.update(
            principal=session.principal,
            csrf_token=session.csrf_token,
            links=nav(session.principal),
        )
    return templates.TemplateResponse(
        request, name, {"now": datetime.now(UTC), **context}, status_code=status_code
    )


def refuse(request: Request, session: Session, what: str) -> Response:
    """403: the operator's role may not do this (the page or button was not shown either)."""
    problem = Problem(
        403, "Forbidden", f"role {session.principal.role.value!r} may not {what}"
    )
    return render(request, "error.html", session, 403, problem=problem)


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def days_left(due_at: datetime, now: datetime, remind_before: int) -> dict[str, Any]:
    """The days-left tag: text and how urgent (overdue, due-soon, ok)."""
    days = (due_at.date() - now.date()).days
    if due_at < now:
        late = max(1, -days)
        return {"text": f"{late} day{'s' if late != 1 else ''} overdue", "level": "overdue"}
    if days == 0:
        return {"text": "due today", "level": "due-soon"}
    text = f"{days} day{'s' if days != 1 else ''} left"
    return {"text": text, "level": "due-soon" if days <= remind_before else "ok"}


def allowed_purposes(container: Container, principal: Principal) -> list[str]:
    allowed = container.settings.role_purposes.get(principal.role.value, [])
    return [p.value for p in Purpose if p.value in allowed]


def _head(container: Container) -> int:
    """The log's head: a page reading a view waits until the view reflects it."""
    return container.ledger.recorder.max_notification_id() or 0


def _read(container: Container, view: str) -> ViewRead:
    return ViewRead(container.views[view], Response())


# -- assets and sign-in --------------------------------------------------------------------


@router.get("/static/{name}")
def static(name: str) -> Response:
    """The console's own assets (htmx, the stylesheet, the icon); nothing comes from elsewhere."""
    if name not in STATIC:
        raise HTTPException(404, "no such asset")
    return FileResponse(
        HERE / "static" / name,
        media_type=STATIC[name],
        headers={"Cache-Control": "public, max-age=3600"},
    )


@router.get("")
@router.get("/")
def home(request: Request, container: ContainerDep) -> Response:
    session = session_store(container).find(request.cookies.get(COOKIE))
    if session is None:
        return RedirectResponse("/console/sign-in", 303)
    links = nav(session.principal)
    return RedirectResponse(links[0][0] if links else "/console/sign-in?none=1", 303)


@router.get("/sign-in")
def sign_in_page(request: Request, none: bool = False) -> Response:
    token = secrets.token_urlsafe(32)
    problem = None
    if none:
        problem = Problem(403, "Nothing to show", "this key's role has no console page")
    response = render(request, "sign_in.html", None, sign_in_token=token, problem=problem)
    response.set_cookie(
        SIGN_IN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/console",
        max_age=3600,
    )
    return response


@router.post("/sign-in")
async def sign_in(
    request: Request,
    container: ContainerDep,
    api_key: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """Exchange an API key for a session cookie (the key is checked as the API checks it:
    failed attempts count towards the client's limit)."""
    expected = request.cookies.get(SIGN_IN_COOKIE)
    if not expected or not secrets.compare_digest(expected, csrf_token):
        raise HTTPException(403, "the sign-in form's CSRF token is missing or wrong; reload it")
    try:
        credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=api_key.strip())
        principal = await authenticate(request, credentials)
    except ApiProblemError as error:
        token = secrets.token_urlsafe(32)
        problem = Problem(error.status, error.title, error.detail)
        response = render(
            request, "sign_in.html", None, error.status, sign_in_token=token, problem=problem
        )
        response.set_cookie(
            SIGN_IN_COOKIE, token, httponly=True, samesite="strict",
            secure=_secure(request), path="/console", max_age=3600,
        )
        return response
    cookie, _ = session_store(container).open(principal)
    response = RedirectResponse("/console/", 303)
    response.set_cookie(
        COOKIE,
        cookie,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/console",
    )
    response.delete_cookie(SIGN_IN_COOKIE, path="/console")
    return response


@router.post("/sign-out")
def sign_out(request: Request, container: ContainerDep, session: Writer) -> Response:
    """End the session (the cookie's token no longer opens anything, in any process)."""
    token = request.cookies.get(COOKIE)
    if token:
        session_store(container).end(token)
    response = RedirectResponse("/console/sign-in", 303)
    response.delete_cookie(COOKIE, path="/console")
    return response


# -- inbox ---------------------------------------------------------------------------------


@router.get("/inbox")
def inbox(
    request: Request,
    container: ContainerDep,
    session: Viewer,
    type: str = "",
    status: str = "",
    jurisdiction: str = "",
    overdue: str = "",
    customer: str = "",
    after: str = "",
) -> Response:
    """Open requests by due date with days left, counts by status, filters (a customer's
    requests among them, as the lookup finds the customer), cursor paging."""
    if not may(session.principal, requests.list_requests):
        return refuse(request, session, "see the request inbox")
    now = datetime.now(UTC)
    filters = {
        "type": type if type in {t.value for t in RequestType} else "",
        "status": status if status in OPEN else "",
        "jurisdiction": jurisdiction,
        "overdue": overdue if overdue in ("yes", "no") else "",
        "customer": _uuid_or_blank(customer),
    }
    read = _read(container, "request_queue")
    who = session.principal
    customer_id = UUID(filters["customer"]) if filters["customer"] else None
    # the API's inbox and counts: the same filters, order and cursors as GET /v1/requests
    page, _ = attempt(
        lambda: requests.list_requests(
            who,
            request,
            read,
            status_=[RequestStatus(filters["status"])] if filters["status"] else None,
            type_=[RequestType(filters["type"])] if filters["type"] else None,
            jurisdiction=filters["jurisdiction"] or None,
            overdue={"yes": True, "no": False}.get(filters["overdue"]),
            customer_id=customer_id,
            limit=50,
            cursor=after or None,
        )
    )
    if page is None:  # a cursor the API refuses: start again from the first page
        page = requests.list_requests(who, request, read, customer_id=customer_id, limit=50)
    counted = requests.summarise_requests(who, read)
    remind = container.settings.remind_before_days
    rows = []
    for item in page.items:
        row = item.model_dump()
        row["tag"] = days_left(item.due_at, now, remind)
        rows.append(row)
    following = page.next_cursor
    position = page.position
    counts = {st.value: n for st, n in counted.by_status.items() if n}
    overdue_count = counted.overdue
    context: dict[str, Any] = {
        "rows": rows,
        "next_cursor": following,
        "filters": filters,
        "counts": counts,
        "overdue_count": overdue_count,
        "statuses": [st.value for st in RequestStatus],
        "types": [t.value for t in RequestType],
        "jurisdictions": sorted(container.settings.deadline_rules()),
        "position": position,
        "paged": bool(after),
        **lookup_context(container, session.principal, "inbox"),
    }
    if is_htmx(request) and request.headers.get("HX-Target") == "inbox-results":
        return render(request, "_inbox_results.html", session, **context)
    return render(request, "inbox.html", session, **context)


def _uuid_or_blank(text: str) -> str:
    try:
        return str(UUID(text.strip()))
    except ValueError:
        return ""


# -- a request -----------------------------------------------------------------------------


def _request_context(
    container: Container, session: Session, request_id: UUID
) -> tuple[dict[str, Any] | None, Problem | None]:
    """What the request page shows (without the requester's words), or why not."""
    who = session.principal
    shown, problem = attempt(lambda: requests.get_request(request_id, container, who, None))
    if shown is None:
        return None, problem
    domain = container.ledger.get_request(request_id)
    now = datetime.now(UTC)
    status = shown.status.value
    is_open = status in OPEN
    timeline = shown.timeline  # the request's events, as GET /v1/requests/{id} gives them
    awaited = sorted(str(p) for p in domain.awaiting)
    names = {
        partner_id: _partner_name(container, UUID(partner_id))
        for partner_id in awaited + [str(p) for p in domain.acknowledged]
    }
    can = {
        "verify": is_open and status == "open" and may(who, requests.verify_request),
        "extend": is_open and not domain.extended_at and not shown.overdue
        and may(who, requests.extend_request),
        "deny": is_open and domain.work_done is None and may(who, requests.deny_request),
        "acknowledge": is_open and may(who, partners.acknowledge),
        "export": shown.type is RequestType.ACCESS and status == "fulfilled"
        and may(who, requests.get_export),
        "receipt": not is_open and may(who, requests.get_receipt),
        "customer": may(who, customers.get_customer) or may(who, customers.get_consents),
    }
    return {
        "r": shown,
        # what decides the actions offered: the status, and whether the work is done (a
        # deletion erased already can no longer be denied); a change reloads the page
        "stage": f"{status}:worked" if domain.work_done is not None else status,
        "tag": days_left(shown.due_at, now, container.settings.remind_before_days)
        if is_open
        else None,
        "is_open": is_open,
        "awaited": awaited,
        "acknowledged": sorted(str(p) for p in domain.acknowledged),
        "notified": domain.notified,
        "partner_names": names,
        "timeline": timeline,
        "can": can,
        "purposes": allowed_purposes(container, who),
    }, None


def _partner_name(container: Container, partner_id: UUID) -> str:
    partner, _ = attempt(lambda: container.ledger.get_partner(partner_id))
    return partner.name if partner is not None else str(partner_id)


@router.get("/requests/new")
def new_request(
    request: Request, container: ContainerDep, session: Viewer, customer_id: str = ""
) -> Response:
    """The intake form for a request received in writing (email, post, web form)."""
    if not may(session.principal, requests.submit_request):
        return refuse(request, session, "record a request")
    return render(
        request, "new_request.html", session, **_intake_context(container, session.principal),
        values={"customer_id": _uuid_or_blank(customer_id)},
    )


def _intake_context(container: Container, who: Principal) -> dict[str, Any]:
    return {
        "types": [t.value for t in RequestType],
        "channels": [c.value for c in RequestChannel],
        "jurisdictions": sorted(container.settings.deadline_rules()),
        **lookup_context(container, who, "intake"),
    }


@router.post("/requests")
def record_request(
    request: Request,
    container: ContainerDep,
    session: Writer,
    customer_id: Annotated[str, Form()] = "",
    type: Annotated[str, Form()] = "",
    channel: Annotated[str, Form()] = "",
    jurisdiction: Annotated[str, Form()] = "",
    statement: Annotated[str, Form()] = "",
    document_reference: Annotated[str, Form()] = "",
) -> Response:
    """Record a written request through the API's own route (due date set now)."""
    if not may(session.principal, requests.submit_request):
        return refuse(request, session, "record a request")
    values = {
        "customer_id": customer_id.strip(),
        "type": type,
        "channel": channel,
        "jurisdiction": jurisdiction,
        "statement": statement,
        "document_reference": document_reference,
    }

    def submit() -> s.RequestAccepted:
        body = s.RequestIn.model_validate(
            {
                "customer_id": values["customer_id"],
                "type": type,
                "channel": channel,
                "jurisdiction": jurisdiction,
                "statement": statement.strip() or None,
                "document_reference": document_reference.strip() or None,
            }
        )
        return requests.submit_request(body, container.ledger, session.principal)

    accepted, problem = attempt(submit)
    if accepted is None:
        assert problem is not None
        return render(
            request, "new_request.html", session, problem.status,
            problem=problem, values=values, **_intake_context(container, session.principal),
        )
    return RedirectResponse(f"/console/requests/{accepted.request_id}?done=recorded", 303)


@router.get("/requests/{request_id}")
def request_page(
    request: Request, request_id: UUID, container: ContainerDep, session: Viewer, done: str = ""
) -> Response:
    """One request: status, days left, partners awaited, timeline, actions by role."""
    if not may(session.principal, requests.get_request):
        return refuse(request, session, "see requests")
    context, problem = _request_context(container, session, request_id)
    if context is None:
        assert problem is not None
        return render(request, "error.html", session, problem.status, problem=problem)
    receipt = no_receipt = None
    if context["can"]["receipt"]:
        # a closed request: the API says whether it has a receipt (only a fulfilled one)
        receipt, no_receipt = attempt(
            lambda: requests.get_receipt(request_id, container, session.principal, Response())
        )
    return render(
        request, "request.html", session, done=done, receipt=receipt, no_receipt=no_receipt,
        **context,
    )


def _live(request: Request, session: Session, context: dict[str, Any], **extra: Any) -> Response:
    """The live part of the request page; the whole page is reloaded instead once the stage
    (status, work done) differs from the one the page was rendered with (``shown``), so
    that the actions shown are those the new stage allows."""
    response = render(request, "_request_live.html", session, **context, **extra)
    shown = request.query_params.get("shown")
    if shown is not None and shown != context["stage"]:
        response.headers["HX-Refresh"] = "true"
    return response


@router.get("/requests/{request_id}/live")
def request_live(
    request: Request, request_id: UUID, container: ContainerDep, session: Viewer
) -> Response:
    """The part of the request page that changes while the workers carry it out (htmx)."""
    if not may(session.principal, requests.get_request):
        return refuse(request, session, "see requests")
    context, problem = _request_context(container, session, request_id)
    if context is None:
        assert problem is not None
        return render(request, "error.html", session, problem.status, problem=problem)
    return _live(request, session, context)


@router.post("/requests/{request_id}/statement")
def request_statement(
    request: Request,
    request_id: UUID,
    container: ContainerDep,
    session: Writer,
    purpose: Annotated[str, Form()] = "",
) -> Response:
    """The requester's own words, after the operator declares a purpose; the API's route
    checks the purpose against the role and records the read."""
    who = session.principal
    if not may(who, requests.get_request):
        return refuse(request, session, "see requests")
    shown, problem = attempt(lambda: requests.get_request(request_id, container, who, purpose))
    status = problem.status if problem else 200
    return render(
        request, "_statement.html", session, status, r=shown, problem=problem, purpose=purpose
    )


def _after_action(
    request: Request,
    container: Container,
    session: Session,
    request_id: UUID,
    problem: Problem | None,
    done: str,
) -> Response:
    if problem is None:
        if is_htmx(request):
            context, failed = _request_context(container, session, request_id)
            if context is not None:
                return _live(request, session, context, done=done)
            problem = failed
        else:
            return RedirectResponse(f"/console/requests/{request_id}?done={done}", 303)
    assert problem is not None
    context, failed = _request_context(container, session, request_id)
    if context is None:
        return render(request, "error.html", session, problem.status, problem=problem)
    template = "_request_live.html" if is_htmx(request) else "request.html"
    return render(request, template, session, problem.status, problem=problem, **context)


@router.post("/requests/{request_id}/verify")
def verify(
    request: Request,
    request_id: UUID,
    container: ContainerDep,
    session: Writer,
    method: Annotated[str, Form()] = "",
    reference: Annotated[str, Form()] = "",
) -> Response:
    """Identity verified, with the method and where the evidence is kept."""
    who = session.principal
    if not may(who, requests.verify_request):
        return refuse(request, session, "verify identity")
    _, problem = attempt(
        lambda: requests.verify_request(
            request_id,
            s.VerifyIn(method=method.strip(), reference=reference.strip()),
            container.ledger,
            who,
        )
    )
    return _after_action(request, container, session, request_id, problem, "verified")


def _with_reason(
    request: Request,
    request_id: UUID,
    container: ContainerDep,
    session: Session,
    reason: str,
    route: Callable[[UUID, s.ReasonIn, RightsLedger, Principal], s.RequestChanged],
    refused: str,
    done: str,
) -> Response:
    """A request action that takes a stated reason, through the API's own route."""
    who = session.principal
    if not may(who, route):
        return refuse(request, session, refused)
    _, problem = attempt(
        lambda: route(request_id, s.ReasonIn(reason=reason.strip()), container.ledger, who)
    )
    return _after_action(request, container, session, request_id, problem, done)


@router.post("/requests/{request_id}/extend")
def extend(
    request: Request,
    request_id: UUID,
    container: ContainerDep,
    session: Writer,
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Extend the deadline once, with a reason, while the rules allow it."""
    return _with_reason(
        request, request_id, container, session, reason,
        requests.extend_request, "extend requests", "extended",
    )  # fmt: skip


@router.post("/requests/{request_id}/deny")
def deny(
    request: Request,
    request_id: UUID,
    container: ContainerDep,
    session: Writer,
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Deny the request, stating the reason."""
    return _with_reason(
        request, request_id, container, session, reason,
        requests.deny_request, "deny requests", "denied",
    )  # fmt: skip


@router.post("/requests/{request_id}/acknowledge")
def acknowledge(
    request: Request,
    request_id: UUID,
    container: ContainerDep,
    session: Writer,
    partner_id: Annotated[str, Form()] = "",
) -> Response:
    """Record a partner's acknowledgement of the deletion notice (the last one fulfils)."""
    who = session.principal
    if not may(who, partners.acknowledge):
        return refuse(request, session, "record acknowledgements")

    def record() -> s.RequestChanged:
        body = s.AcknowledgementIn(request_id=request_id)
        return partners.acknowledge(UUID(partner_id), body, container.ledger, who)

    try:
        _, problem = attempt(record)
    except ValueError:
        problem = Problem(422, "Invalid form", "partner_id: not a partner id")
    return _after_action(request, container, session, request_id, problem, "acknowledged")


def _as_file(answer: Any, headers: Response) -> Response:
    """A route's answer as the browser gets it: a letter (HTML, with the letter's own
    security policy) as it is; a JSON answer as the API serialises it, with the route's
    ``Content-Disposition`` when it made it a file."""
    if isinstance(answer, Response):
        answer.headers["Cache-Control"] = "no-store"
        return answer
    file_headers = {"Cache-Control": "no-store"}
    if "content-disposition" in headers.headers:
        file_headers["Content-Disposition"] = headers.headers["content-disposition"]
    return Response(
        answer.model_dump_json(indent=2), media_type="application/json", headers=file_headers
    )


def _form(as_: str) -> str:
    return "text/html" if as_ == "letter" else "application/json"


@router.get("/requests/{request_id}/export")
def download_export(
    request: Request,
    request_id: UUID,
    container: ContainerDep,
    session: Viewer,
    as_: Annotated[str, Query(alias="as")] = "json",
    download: bool = True,
) -> Response:
    """The access export as a JSON file, or the letter to the customer (``?as=letter``) to
    preview and print or (``download``) to save; read for the legal purpose, and recorded."""
    who = session.principal
    if not may(who, requests.get_export):
        return refuse(request, session, "download exports")
    answer = Response()
    export, problem = attempt(
        lambda: requests.get_export(
            request_id, container, who, answer, "legal", _form(as_), download=download
        )
    )
    if export is None:
        assert problem is not None
        return render(request, "error.html", session, problem.status, problem=problem)
    return _as_file(export, answer)


@router.get("/requests/{request_id}/receipt")
def download_receipt(
    request: Request,
    request_id: UUID,
    container: ContainerDep,
    session: Viewer,
    as_: Annotated[str, Query(alias="as")] = "json",
    download: bool = True,
) -> Response:
    """The receipt of a fulfilled request: a JSON file, or its letter (``?as=letter``) to
    preview and print or (``download``) to save. It holds no personal value: no purpose."""
    who = session.principal
    if not may(who, requests.get_receipt):
        return refuse(request, session, "read receipts")
    answer = Response()
    receipt, problem = attempt(
        lambda: requests.get_receipt(
            request_id, container, who, answer, _form(as_), download=download
        )
    )
    if receipt is None:
        assert problem is not None
        return render(request, "error.html", session, problem.status, problem=problem)
    return _as_file(receipt, answer)


# -- customers -----------------------------------------------------------------------------


LOOKUP_KINDS = {"email": "Email", "phone": "Phone", "account": "Account reference"}
"""What a customer can be found by (the blind index's identifiers)."""
LOOKUP_FROM = ("customers", "inbox", "intake")
"""The pages that offer the lookup: each offers what it is for next to the customers found."""


def lookup(
    request: Request, container: Container, who: Principal, kind: str, value: str, purpose: str
) -> tuple[s.CustomerMatches | None, Problem | None]:
    """Customers holding the identifier, through the API's own route: the purpose is checked
    against the role, each customer found is limited to it and recorded as a read
    (``what: lookup``)."""
    value = value.strip()
    if kind not in LOOKUP_KINDS:
        return None, Problem(422, "Invalid form", "kind: find by email, phone or account")
    if not value:
        return None, Problem(422, "Invalid form", f"{kind}: enter what to look for")

    def find() -> s.CustomerMatches:
        # the index as of now: a customer registered a moment ago is found
        read = ReadFrom("customer_lookup")(container, Response(), _head(container))
        return customers.find_customers(
            request,
            Response(),
            container,
            who,
            read,
            email=value if kind == "email" else None,
            phone=value if kind == "phone" else None,
            account=value if kind == "account" else None,
            x_purpose=purpose,
            channel=None,
            limit=20,
            cursor=None,
        )

    return attempt(find)


def _lookup_roles(who: Principal) -> dict[str, bool]:
    return {
        "lookup": may(who, customers.find_customers),
        "customer": may(who, customers.get_customer),
        "requests": may(who, requests.list_requests),
        "record": may(who, requests.submit_request),
    }


def _customer_roles(who: Principal) -> dict[str, bool]:
    return {
        "profile": may(who, customers.get_customer),
        "consents": may(who, customers.get_consents),
        "disclosures": may(who, customers.customer_disclosures),
        "accesses": may(who, audit.customer_trail),
        "record": may(who, requests.submit_request),
        "state": may(who, audit.customer_state),
    }


def lookup_context(container: Container, who: Principal, where: str) -> dict[str, Any]:
    """What a page needs to offer the lookup form (``where``: the page it is on)."""
    return {
        "lookup": may(who, customers.find_customers),
        "lookup_kinds": LOOKUP_KINDS,
        "lookup_from": where,
        "lookup_purposes": allowed_purposes(container, who),
    }


@router.get("/customers")
def customer_search(
    request: Request, container: ContainerDep, session: Viewer, customer_id: str = ""
) -> Response:
    """Find a customer by email, phone or account reference (the lookup), or open one by id."""
    can = _customer_roles(session.principal)
    if not (can["profile"] or can["consents"] or can["disclosures"]):
        return refuse(request, session, "see customers")
    problem = None
    if customer_id.strip():
        try:
            return RedirectResponse(f"/console/customers/{UUID(customer_id.strip())}", 303)
        except ValueError:
            problem = Problem(422, "Not a customer id", "a customer id is a UUID")
    return render(
        request, "customers.html", session, problem.status if problem else 200,
        problem=problem, **lookup_context(container, session.principal, "customers"),
    )


@router.post("/customers/lookup")
def customer_lookup(
    request: Request,
    container: ContainerDep,
    session: Writer,
    kind: Annotated[str, Form()] = "email",
    value: Annotated[str, Form()] = "",
    purpose: Annotated[str, Form()] = "",
    where: Annotated[str, Form()] = "customers",
) -> Response:
    """The customers an email, phone or account reference finds, for a declared purpose (a
    form post: the identifier stays out of URLs and logs). htmx swaps the results in; without
    it the customers page shows them."""
    who = session.principal
    if not may(who, customers.find_customers):
        return refuse(request, session, "find customers")
    where = where if where in LOOKUP_FROM else "customers"
    found, problem = lookup(request, container, who, kind, value, purpose)
    context: dict[str, Any] = {
        "found": found,
        "searched": {"kind": kind, "value": value.strip(), "purpose": purpose},
        "can_next": _lookup_roles(who),
        **lookup_context(container, who, where),
    }
    status = problem.status if problem else 200
    if is_htmx(request):
        return render(
            request, "_lookup_results.html", session, status, problem=problem, fragment=True,
            **context,
        )
    return render(request, "customers.html", session, status, problem=problem, **context)


@router.get("/customers/{customer_id}")
def customer_page(
    request: Request, customer_id: UUID, container: ContainerDep, session: Viewer
) -> Response:
    """A customer: choose a purpose first; nothing personal is shown before."""
    can = _customer_roles(session.principal)
    if not (can["profile"] or can["consents"] or can["disclosures"]):
        return refuse(request, session, "see customers")
    return render(
        request, "customer.html", session, customer_id=customer_id, can=can,
        purposes=allowed_purposes(container, session.principal),
    )


@router.post("/customers/{customer_id}/view")
def customer_data(
    request: Request,
    customer_id: UUID,
    container: ContainerDep,
    session: Writer,
    purpose: Annotated[str, Form()] = "",
) -> Response:
    """Categories held for the purpose, consents with history and evidence, disclosures and
    the access log (this look included), each from the API's own route function."""
    who = session.principal
    can = _customer_roles(who)
    if not (can["profile"] or can["consents"] or can["disclosures"]):
        return refuse(request, session, "see customers")
    problem: Problem | None = None
    profile = consents = disclosures = None
    if can["profile"]:
        profile, problem = attempt(
            lambda: customers.get_customer(
                customer_id, container, who, _read(container, "customer_profile"), purpose, None
            )
        )
    elif purpose not in allowed_purposes(container, who):
        problem = Problem(403, "Purpose not allowed", f"your role may not declare {purpose!r}")
    if problem is None and can["consents"]:
        consents, problem = attempt(
            lambda: customers.get_consents(
                customer_id, container, who, _read(container, "consent_ledger")
            )
        )
    if problem is None and can["disclosures"]:
        disclosures, problem = attempt(
            lambda: customers.customer_disclosures(
                customer_id, who, container.ledger, request, _read(container, "disclosures"), 500
            )
        )
    accesses = None
    if problem is None and can["accesses"]:
        view = container.views.audit_trail
        head = container.ledger.recorder.max_notification_id() or 0
        container.wait_for(view, head, container.settings.read_wait_seconds)
        accesses, _ = view.accesses(customer_id)
        accesses.reverse()
    return render(
        request, "_customer_data.html", session, problem.status if problem else 200,
        problem=problem, customer_id=customer_id, purpose=purpose, can=can,
        profile=profile, consents=consents, disclosures=disclosures, accesses=accesses,
    )


# -- partners ------------------------------------------------------------------------------


def _awaiting(
    request: Request, container: Container, who: Principal, partner_id: UUID, read: ViewRead
) -> tuple[s.NotificationPage | None, Problem | None]:
    """The deletion notices the partner has still to acknowledge, from the API's route."""
    return attempt(
        lambda: partners.partner_notifications(
            partner_id, request, Response(), who, read, NoticeStatus.AWAITING, 500, None
        )
    )


def _partners_read(
    container: Container, min_position: int | None
) -> tuple[ViewRead | None, Problem | None]:
    """The partners view, once it reflects ``min_position`` (an acknowledgement just
    recorded; the log's head otherwise), with the API's own read-your-writes rule."""
    wanted = _head(container) if min_position is None else min_position
    return attempt(lambda: ReadFrom("partners")(container, Response(), wanted))


@router.get("/partners")
def partner_search(
    request: Request,
    container: ContainerDep,
    session: Viewer,
    partner_id: str = "",
    cursor: str = "",
    min_position: int | None = None,
    done: str = "",
) -> Response:
    """Every partner with its contract's validity and, for the roles that may read
    notifications, the acknowledgements it still owes."""
    who = session.principal
    if not may(who, partners.list_partners):
        return refuse(request, session, "see partners")
    problem: Problem | None
    if partner_id.strip():
        try:
            return RedirectResponse(f"/console/partners/{UUID(partner_id.strip())}", 303)
        except ValueError:
            problem = Problem(422, "Not a partner id", "a partner id is a UUID")
            return render(request, "partners.html", session, 422, problem=problem, listed=None)
    read, problem = _partners_read(container, min_position)
    listed: s.PartnerPage | None = None
    if read is not None:
        view = read
        listed, problem = attempt(
            lambda: partners.list_partners(request, Response(), who, view, 50, cursor or None)
        )
    owed: dict[UUID, list[s.NotificationOut]] = {}
    can_notices = may(who, partners.partner_notifications)
    if listed is not None and read is not None and can_notices:
        for partner in listed.items:
            notices, _ = _awaiting(request, container, who, partner.partner_id, read)
            owed[partner.partner_id] = notices.items if notices is not None else []
    return render(
        request, "partners.html", session, problem.status if problem else 200,
        problem=problem, listed=listed, owed=owed if can_notices else None,
        can_acknowledge=may(who, partners.acknowledge), done=done, cursor=cursor,
    )


@router.get("/partners/{partner_id}")
def partner_page(
    request: Request,
    partner_id: UUID,
    container: ContainerDep,
    session: Viewer,
    min_position: int | None = None,
    done: str = "",
) -> Response:
    """A partner, its contract's validity, what it received, what it was notified of and
    what it has still to acknowledge."""
    who = session.principal
    if not may(who, partners.get_partner):
        return refuse(request, session, "see partners")
    partner, problem = attempt(lambda: partners.get_partner(partner_id, container.ledger, who))
    if partner is None:
        assert problem is not None
        return render(request, "error.html", session, problem.status, problem=problem)
    disclosures = None
    if may(who, partners.partner_disclosures):
        disclosures = partners.partner_disclosures(
            partner_id, who, container.ledger, request, _read(container, "disclosures"), 500
        )
    notices: s.NotificationPage | None = None
    if may(who, partners.partner_notifications):
        read, problem = _partners_read(container, min_position)
        if read is not None:
            view = read
            notices, problem = attempt(
                lambda: partners.partner_notifications(
                    partner_id, request, Response(), who, view, None, 500, None
                )
            )
    return render(
        request, "partner.html", session, problem.status if problem else 200, problem=problem,
        partner=partner, disclosures=disclosures, notices=notices,
        can_acknowledge=may(who, partners.acknowledge), done=done,
    )


@router.post("/partners/{partner_id}/acknowledge")
def acknowledge_for_partner(
    request: Request,
    partner_id: UUID,
    container: ContainerDep,
    session: Writer,
    request_id: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "list",
) -> Response:
    """Record the partner's acknowledgement of a deletion notice from the partners pages;
    back to the page it came from once the partners view reflects it."""
    who = session.principal
    if not may(who, partners.acknowledge):
        return refuse(request, session, "record acknowledgements")

    def record() -> s.RequestChanged:
        body = s.AcknowledgementIn(request_id=UUID(request_id.strip()))
        return partners.acknowledge(partner_id, body, container.ledger, who)

    try:
        changed, problem = attempt(record)
    except ValueError:
        changed, problem = None, Problem(422, "Invalid form", "request_id: not a request id")
    if changed is None:
        assert problem is not None
        return render(request, "error.html", session, problem.status, problem=problem)
    where = f"/console/partners/{partner_id}" if back == "partner" else "/console/partners"
    return RedirectResponse(
        f"{where}?min_position={changed.position}&done=acknowledged", 303
    )


# -- audit ---------------------------------------------------------------------------------


@router.get("/audit")
def audit_page(
    request: Request,
    container: ContainerDep,
    session: Viewer,
    customer_id: str = "",
    cursor: str | None = None,
) -> Response:
    """The trail (of one customer or the whole log), state as of a moment, chain
    verification, and the followers' positions and lag."""
    who = session.principal
    if not may(who, audit.global_trail):
        return refuse(request, session, "see the audit trail")
    problem = None
    customer: UUID | None = None
    if customer_id.strip():
        try:
            customer = UUID(customer_id.strip())
        except ValueError:
            problem = Problem(422, "Not a customer id", "a customer id is a UUID")
    read = _read(container, "audit_trail")
    trail: s.TrailPage | None
    if customer is not None:
        found = customer
        trail, problem = attempt(
            lambda: audit.customer_trail(found, who, container.ledger, request, read, 100, cursor)
        )
    else:
        trail, problem = attempt(lambda: audit.global_trail(who, request, read, 100, cursor))
    head = container.ledger.recorder.max_notification_id() or 0
    followers = health.followers_health(container, head)
    return render(
        request, "audit.html", session, problem.status if problem else 200,
        problem=problem, trail=trail, customer_id=customer_id.strip(), cursor=cursor,
        head=head, followers=followers, views=container.views.positions(),
        # a past state is read for the legal purpose only (the route refuses any other)
        can_state=may(who, audit.customer_state) and "legal" in allowed_purposes(container, who),
        can_verify=may(who, audit.verify_history),
    )


@router.post("/audit/verify")
def run_verification(request: Request, container: ContainerDep, session: Writer) -> Response:
    """Walk the hash chain now, through the API's own route, and show the result."""
    who = session.principal
    if not may(who, audit.verify_history):
        return refuse(request, session, "verify the chain")
    result = audit.verify_history(container, who)
    return render(request, "_verification.html", session, result=result)


@router.post("/audit/state")
def state_as_of(
    request: Request,
    container: ContainerDep,
    session: Writer,
    customer_id: Annotated[str, Form()] = "",
    as_of: Annotated[str, Form()] = "",
    purpose: Annotated[str, Form()] = "legal",
) -> Response:
    """A customer's state as it stood at a moment (declared purpose, recorded)."""
    who = session.principal
    if not may(who, audit.customer_state):
        return refuse(request, session, "read past states")

    def replay() -> s.CustomerAsOf:
        moment = datetime.fromisoformat(as_of)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return audit.customer_state(
            UUID(customer_id.strip()), moment, container.ledger, container, who, purpose
        )

    try:
        state, problem = attempt(replay)
    except ValueError as error:
        state, problem = None, Problem(422, "Invalid form", str(error))
    return render(
        request, "_state.html", session, problem.status if problem else 200,
        problem=problem, state=state,
        state_json=json.dumps(state.model_dump(mode="json"), indent=2) if state else None,
    )


def iso_day(value: datetime | date | None) -> str:
    """A date or time as the console shows it (UTC, to the minute)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return value.isoformat()


templates.env.filters["when"] = iso_day
