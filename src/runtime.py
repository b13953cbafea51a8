"""Process-wide tuning of the runtime: the cyclic garbage collector.

Serving and catching up allocate many short-lived containers (requests' models and
dicts, decoded events, rows). At Python's default thresholds (700, 10, 10) they set off
frequent collections, and the full ones walk every object the process holds: the
application, FastAPI's and pydantic's models, the caches. ``fewer_collections`` collects
the first generation at 50,000 objects and freezes what the process held before (left out
of collections meanwhile). Measured: the API process's CPU per consent fell by about a
tenth (docs/benchmarks.md, stop 18); a rebuild's by about a quarter. Nothing is lost:
garbage is still collected, later.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

GC_THRESHOLD = 50_000
"""The collector's first-generation threshold while ``fewer_collections`` is held."""

_gc_lock = threading.Lock()
_gc_holders = 0
_gc_saved: tuple[int, int, int] | None = None


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Run the cyclic garbage collector less often for the duration (process-wide; held
    by the API for as long as it serves and by a catch-up for its batches; restored when the
    last concurrent holder leaves). See the module's docstring."""
    global _gc_holders, _gc_saved
    with _gc_lock:
        if _gc_holders == 0:
            _gc_saved = gc.get_threshold()
            gen0, gen1, gen2 = _gc_saved
            gc.set_threshold(max(gen0, GC_THRESHOLD), max(gen1, 20), max(gen2, 100))
            gc.freeze()  # what the process held before is not walked again meanwhile
        _gc_holders += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0 and _gc_saved is not None:
                gc.unfreeze()
                gc.set_threshold(*_gc_saved)
                _gc_saved = None
