"""The collector's tuning: held by the API while it serves and by catch-ups, restored after."""

from __future__ import annotations

import gc

from rightsledger.runtime import GC_THRESHOLD, fewer_collections


def test_collections_are_fewer_while_held_and_as_before_after() -> None:
    """While held, the first generation is collected at ``GC_THRESHOLD`` objects and what
    the process held before is frozen; afterwards thresholds and frozen objects are as
    they were."""
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    with fewer_collections():
        assert gc.get_threshold()[0] == max(before[0], GC_THRESHOLD)
        assert gc.get_freeze_count() > frozen
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen


def test_nested_holders_restore_only_when_the_last_leaves() -> None:
    """The API holds it for as long as it serves; an in-process catch-up's own hold ending
    leaves the API's tuning in place."""
    before = gc.get_threshold()
    with fewer_collections():
        tuned = gc.get_threshold()
        with fewer_collections():
            assert gc.get_threshold() == tuned
        assert gc.get_threshold() == tuned
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
