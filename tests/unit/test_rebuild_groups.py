"""How a rebuild in several processes splits the views between them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rightsledger.projections.worker import VIEW_CLASSES, rebuild_groups

names = st.lists(st.sampled_from(sorted(VIEW_CLASSES)), min_size=1, unique=True)


@given(chosen=names, processes=st.integers(min_value=1, max_value=9))
def test_every_view_is_in_exactly_one_group(chosen: list[str], processes: int) -> None:
    """Each view asked for is rebuilt by exactly one process; no process is idle, and
    there are never more processes than asked for or than views."""
    groups = rebuild_groups(chosen, processes)
    assert sorted(name for group in groups for name in group) == sorted(chosen)
    assert all(groups)
    assert len(groups) == min(processes, len(chosen))


@given(chosen=names, processes=st.integers(min_value=2, max_value=4))
def test_the_groups_share_the_work_evenly(chosen: list[str], processes: int) -> None:
    """No group carries more than the lightest one plus the heaviest single view (views are
    placed heaviest first, each on the lightest group so far)."""
    groups = rebuild_groups(chosen, processes)
    loads = [sum(VIEW_CLASSES[name].rebuild_weight for name in group) for group in groups]
    heaviest = max(VIEW_CLASSES[name].rebuild_weight for name in chosen)
    assert max(loads) <= min(loads) + heaviest


def test_the_three_heaviest_views_are_not_all_in_one_of_two_groups() -> None:
    """Two processes rebuilding every view split the heaviest views between them."""
    heavy = sorted(VIEW_CLASSES, key=lambda n: -VIEW_CLASSES[n].rebuild_weight)[:3]
    groups = rebuild_groups(list(VIEW_CLASSES), 2)
    assert len(groups) == 2
    assert not any(set(heavy) <= set(group) for group in groups)


def test_an_unknown_view_is_refused_by_name() -> None:
    """A name that is no view is refused before any process starts, naming it."""
    with pytest.raises(ValueError, match="unknown view 'customers'"):
        rebuild_groups(["customer_profile", "customers"], 2)
