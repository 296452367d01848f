"""The cyclic garbage collector and TensorFlow's heap of Python objects: a full collection in a process
that loaded TensorFlow traverses millions of objects, 0.2 s each time and 1.5-2.5 s of CPU at interpreter
exit (a notebook kernel took 2.7 s from its last cell to its end, 0.3 s without that collection;
``benchmarks/bench_kernel_exit.py`). Frozen objects (`gc.freeze`) are left out of collections.

Freezing the heap at exit leaves out the collection of reference cycles then: objects reachable only from
a cycle are not finalized at exit. ecgkeras closes and renames every file it writes explicitly
(`ecgkeras.files`), so none of its output depends on it; the operating system frees the memory.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
from typing import Iterator

_registered = False


def freeze_heap_at_exit() -> None:
    """At interpreter exit (after the exit handlers registered later), freeze every object, so that
    finalization's last collection does not traverse them."""
    global _registered
    if not _registered:
        atexit.register(gc.freeze)
        _registered = True


@contextlib.contextmanager
def existing_objects_frozen() -> Iterator[None]:
    """Inside the block, full collections (a library's `gc.collect()`) see only the objects made in it."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
