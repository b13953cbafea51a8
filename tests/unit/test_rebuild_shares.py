"""What a rebuild in shares relies on without the database: the views it is asked for,
each share's own tracking name, and the cached class tests the views apply to every event."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rightsledger.domain.customer import Customer
from rightsledger.domain.partner import Partner
from rightsledger.domain.requests import DataRightsRequest
from rightsledger.projections.base import APPLICATION_NAME, Kinds
from rightsledger.projections.worker import VIEW_CLASSES, Share, chosen_views

names = st.lists(st.sampled_from(sorted(VIEW_CLASSES)), min_size=1)


@given(asked=names)
def test_the_views_asked_for_are_rebuilt_once_each_in_order(asked: list[str]) -> None:
    """Every view named is rebuilt, once however often it is named, in the order given."""
    chosen = chosen_views(asked)
    assert chosen == list(dict.fromkeys(asked))


def test_an_unknown_view_is_refused_by_name() -> None:
    """A name that is no view is refused before any process starts, naming it."""
    with pytest.raises(ValueError, match="unknown view 'customers'"):
        chosen_views(["customer_profile", "customers"])


@given(count=st.integers(min_value=2, max_value=16))
def test_each_share_tracks_its_progress_under_a_name_of_its_own(count: int) -> None:
    """The shares of one rebuild never share a tracking record, nor take the live one's."""
    tracked = {Share(index, count, "t").tracking_name for index in range(count)}
    assert len(tracked) == count
    assert APPLICATION_NAME not in tracked


EVENT_CLASSES = [
    Customer.Registered,
    Customer.ConsentGranted,
    Customer.Erased,
    Partner.Registered,
    Partner.ContractRenewed,
    DataRightsRequest.Submitted,
    DataRightsRequest.Denied,
]


@given(
    classes=st.lists(st.sampled_from(EVENT_CLASSES), min_size=1, max_size=3),
    asked=st.lists(st.sampled_from(EVENT_CLASSES), min_size=1, max_size=20),
)
def test_a_cached_class_test_answers_as_isinstance_does(
    classes: list[type], asked: list[type]
) -> None:
    """``Kinds`` answers for each event exactly what ``isinstance`` would, first time and
    after (the answer cached per event class)."""
    test: Kinds[object] = Kinds(*classes)
    for cls in asked + asked:
        event: object = object.__new__(cls)
        assert test(event) is isinstance(event, tuple(classes))


def test_a_cached_class_test_covers_subclasses() -> None:
    """A test against an aggregate's event base class covers every event of it."""
    customer_events = Kinds(Customer.Event)
    assert customer_events(object.__new__(Customer.ConsentGranted))
    assert not customer_events(object.__new__(Partner.ContractRenewed))
