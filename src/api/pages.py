"""Paged answers from views, shared by the routers."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Query

from rightsledger.api import schemas as s
from rightsledger.api.deps import ViewRead
from rightsledger.projections.disclosures import DisclosuresView

Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]


def disclosure_page(
    read: ViewRead, *, by: str, value: UUID, limit: int, offset: int
) -> s.DisclosurePage:
    """A page of the disclosures register, for one partner or one customer."""
    view = read.view
    assert isinstance(view, DisclosuresView)
    select = view.for_partner if by == "partner" else view.for_customer
    rows, position = select(value, limit=limit, offset=offset)
    read.reflect(position)
    return s.DisclosurePage(items=[s.DisclosureOut(**row) for row in rows], position=position)
