"""FastAPI dependencies: the container's parts, and who is calling with which role."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rightsledger.api.problems import ApiProblemError
from rightsledger.bootstrap import Container
from rightsledger.domain.ledger import RightsLedger
from rightsledger.domain.values import Purpose
from rightsledger.projections.base import View
from rightsledger.security.keys import Principal, Role, key_hash

BEARER = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer rlk_...`")
"""The bearer scheme; gated operations declare it in the OpenAPI document (``api/app.py``)."""


async def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


async def get_ledger(request: Request) -> RightsLedger:
    # from the request itself rather than through ``get_container``: every dependency
    # level costs each request its own resolution (this one is on every command)
    container: Container = request.app.state.container
    return container.ledger


LedgerDep = Annotated[RightsLedger, Depends(get_ledger)]


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> Principal:
    """The caller, from its bearer key. The client address is the peer's, or the one a
    trusted proxy reported (``RIGHTSLEDGER_TRUSTED_PROXIES``; see ``serve``); failures are
    limited per address and per presented key (``AuthGuard``)."""
    container: Container = request.app.state.container
    challenge = {"WWW-Authenticate": 'Bearer realm="rightsledger"'}
    client = request.client.host if request.client else "unknown"
    guard = container.auth_guard
    token = credentials.credentials if credentials is not None else None
    if credentials is not None and credentials.scheme.lower() != "bearer":
        token = None
    presented = key_hash(token) if token else None
    wait = guard.retry_after(client, presented)
    if wait is not None:
        _count_failure(request, "limited")
        raise ApiProblemError(
            429,
            "Too many failed authentications",
            f"too many failed authentications from this client or with this key; retry in "
            f"{wait} s",
            slug="too-many-failures",
            headers={"Retry-After": str(wait)},
        )
    if not token or presented is None:
        _count_failure(request, "no_key")
        await run_in_threadpool(guard.failed, client, "no bearer key")
        raise ApiProblemError(
            401,
            "Unauthorized",
            "send an API key as 'Authorization: Bearer <key>'",
            slug="unauthorized",
            headers=challenge,
        )
    principal = container.keys.cached(token)
    if principal is None:
        principal = await run_in_threadpool(container.keys.authenticate, token)
    if principal is None:
        _count_failure(request, "unknown_key")
        await run_in_threadpool(guard.failed, client, "unknown or revoked key", presented)
        raise ApiProblemError(
            401,
            "Unauthorized",
            "the API key is unknown or revoked",
            slug="unauthorized",
            headers=challenge,
        )
    guard.succeeded(client, presented)
    return principal


def _count_failure(request: Request, reason: str) -> None:
    """Count a failed authentication in the app's metrics, when it has them."""
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.auth_failure(reason)


class RoleGate:
    """A dependency admitting only the listed roles (admin is always admitted).

    ``purpose`` says that the personal data read behind this gate serves that purpose only
    (the route checks it with ``declared_purpose(only=...)``); the OpenAPI document states,
    for each operation, the roles its gate admits and the purposes each of them may declare.
    """

    def __init__(self, *roles: Role, purpose: Purpose | None = None) -> None:
        self.roles = frozenset({*roles, Role.ADMIN})
        self.purpose = purpose

    async def __call__(self, request: Request) -> Principal:
        # reads the key and authenticates itself rather than through dependencies of its
        # own: each level costs every request behind a gate its own resolution
        credentials = await BEARER(request)
        principal = await authenticate(request, credentials)
        if principal.role not in self.roles:
            allowed = ", ".join(sorted(r.value for r in self.roles))
            raise ApiProblemError(
                403,
                "Forbidden",
                f"role {principal.role.value!r} may not do this; allowed: {allowed}",
                slug="forbidden",
            )
        return principal


def allow(*roles: Role, purpose: Purpose | None = None) -> RoleGate:
    return RoleGate(*roles, purpose=purpose)


class ViewRead:
    """A read from one view: waits for ``min_position`` and reports the position read."""

    def __init__(self, view: View, response: Response) -> None:
        self.view = view
        self.response = response

    def reflect(self, position: int) -> None:
        self.response.headers["X-Position"] = str(position)


class ReadFrom:
    """Dependency: read-your-writes on a view, through ``?min_position=N``."""

    def __init__(self, view_name: str) -> None:
        self.view_name = view_name

    def __call__(
        self,
        container: ContainerDep,
        response: Response,
        min_position: Annotated[
            int | None,
            Query(
                ge=0,
                le=2**62,
                description="Wait until the view reflects this log position (a command's "
                "`position`); 503 with Retry-After if it does not within a few seconds.",
            ),
        ] = None,
    ) -> ViewRead:
        view = container.views[self.view_name]
        if min_position is None or view.position() >= min_position:
            return ViewRead(view, response)
        head = container.ledger.recorder.max_notification_id() or 0
        if min_position > head:
            raise ApiProblemError(
                422,
                "Position not in the log",
                f"position {min_position} is beyond the log's head ({head}): pass the "
                "position a command returned",
                slug="position-beyond-head",
            )
        if not container.wait_for(view, min_position, container.settings.read_wait_seconds):
            raise ApiProblemError(
                503,
                "View not caught up",
                f"the {self.view_name} view has not reached position {min_position} yet; "
                "retry shortly",
                slug="not-caught-up",
                headers={"Retry-After": "1"},
            )
        return ViewRead(view, response)


PurposeHeader = Annotated[
    str | None,
    Header(
        alias="X-Purpose",
        description="Why personal data is read: account, billing, support, legal or marketing.",
    ),
]


def declared_purpose(
    container: Container,
    principal: Principal,
    header: str | None,
    customer_id: UUID | None,
    what: str,
    *,
    only: str | None = None,
    why: str = "",
) -> str:
    """Check the purpose a reader declares against their role (refusals are recorded) and,
    for reads that serve one purpose only, against that purpose."""
    purposes = tuple(p.value for p in Purpose)
    if header is None or header not in purposes:
        raise ApiProblemError(
            422,
            "Purpose required",
            f"reads of personal data declare a purpose in the X-Purpose header: one of "
            f"{', '.join(purposes)}",
            slug="purpose-required",
        )
    allowed = container.settings.role_purposes.get(principal.role.value, [])
    if header not in allowed:
        reason = f"role {principal.role.value!r} may not read personal data for {header!r}"
        if customer_id is not None:
            container.ledger.record_refusal(
                customer_id,
                actor=principal.actor,
                role=principal.role.value,
                purpose=header,
                what=what,
                reason=reason,
            )
        raise ApiProblemError(403, "Purpose not allowed", reason, slug="purpose-not-allowed")
    if only is not None and header != only:
        raise ApiProblemError(
            403,
            "Purpose not allowed",
            f"{why}: declare X-Purpose: {only}",
            slug="purpose-not-allowed",
        )
    return header
