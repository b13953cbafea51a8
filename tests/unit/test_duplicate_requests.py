"""The duplicate rule on the customer's stream: one open request of a type per customer."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rightsledger.domain.customer import Customer
from rightsledger.domain.errors import StateError
from rightsledger.domain.requests import DuplicateRequestError
from rightsledger.domain.values import RequestType


def customer() -> Customer:
    return Customer.register(
        policy_version="2026-01", identity={"name": "Ada"}, actor="intake:desk"
    )


def test_a_second_open_request_of_a_type_is_refused_naming_the_first() -> None:
    """While the first access request is open, another is refused with its id; a deletion is
    received; once the first is closed, a new access request is received."""
    ada = customer()
    first, second = uuid4(), uuid4()
    open_ = {first}
    ada.receive_request(
        request_id=first, request_type="access", still_open=open_.__contains__, actor="a"
    )
    with pytest.raises(DuplicateRequestError) as refused:
        ada.receive_request(
            request_id=second, request_type="access", still_open=open_.__contains__, actor="a"
        )
    assert refused.value.open_request == first
    assert str(first) in refused.value.detail
    ada.receive_request(
        request_id=uuid4(), request_type="deletion", still_open=open_.__contains__, actor="a"
    )
    open_.clear()
    ada.receive_request(
        request_id=second, request_type="access", still_open=open_.__contains__, actor="a"
    )
    assert sorted(ada.requests.values()) == ["access", "access", "deletion"]
    assert ada.requests[first] == ada.requests[second] == "access"
    with pytest.raises(StateError):
        ada.receive_request(
            request_id=second, request_type="access", still_open=lambda _: False, actor="a"
        )


steps = st.lists(
    st.tuples(st.sampled_from([t.value for t in RequestType]), st.booleans()), max_size=30
)


@given(steps)
def test_never_two_open_requests_of_one_type(script: list[tuple[str, bool]]) -> None:
    """For any sequence of submissions (each closing the open one of its type first, or not),
    a submission is received exactly when no request of its type is open, and at no time are
    two requests of one type open."""
    ada = customer()
    open_: dict[UUID, str] = {}
    for kind, close_first in script:
        if close_first:
            for rid in [r for r, k in open_.items() if k == kind]:
                del open_[rid]
        blocking = [r for r, k in open_.items() if k == kind]
        new = uuid4()
        if blocking:
            with pytest.raises(DuplicateRequestError) as refused:
                ada.receive_request(
                    request_id=new, request_type=kind, still_open=open_.__contains__, actor="a"
                )
            assert refused.value.open_request in blocking
        else:
            ada.receive_request(
                request_id=new, request_type=kind, still_open=open_.__contains__, actor="a"
            )
            open_[new] = kind
        kinds = list(open_.values())
        assert len(kinds) == len(set(kinds))
    assert len(ada.requests) == len(ada.collect_events()) - 1  # one event per received
