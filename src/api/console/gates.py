"""Which roles may use which API route, read from the routes' own ``RoleGate``s.

The console shows a page or a button only to the roles the API route behind it admits,
and refuses the rest itself: both decisions come from here, so they cannot drift from
the API's table (docs/api.md).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import cache
from typing import Any

from fastapi.routing import APIRoute

from rightsledger.api.deps import RoleGate
from rightsledger.api.routers import audit, customers, partners, requests
from rightsledger.security.keys import Principal, Role

_ROUTERS = (customers.router, partners.router, requests.router, audit.router)


@cache
def _gates() -> dict[Callable[..., Any], frozenset[Role]]:
    found: dict[Callable[..., Any], frozenset[Role]] = {}
    for router in _ROUTERS:
        for route in router.routes:
            if not isinstance(route, APIRoute):
                continue
            for dependency in route.dependant.dependencies:
                if isinstance(dependency.call, RoleGate):
                    # the route function itself (an offloaded route wraps it: api/offload.py)
                    found[inspect.unwrap(route.endpoint)] = dependency.call.roles
    return found


def roles_of(endpoint: Callable[..., Any]) -> frozenset[Role]:
    """The roles the API admits to ``endpoint`` (a route function of the API's routers)."""
    try:
        return _gates()[endpoint]
    except KeyError:
        raise LookupError(f"{endpoint.__qualname__} is not a role-gated API route") from None


def may(principal: Principal, endpoint: Callable[..., Any]) -> bool:
    """Whether the principal's role may use the API route ``endpoint``."""
    return principal.role in roles_of(endpoint)
