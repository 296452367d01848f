"""The cyclic garbage collector and TensorFlow's heap of Python objects: a full collection in a process
that loaded TensorFlow traverses millions of objects, 0.2 s each time and 1.5-2.5 s of CPU at interpreter
exit (a notebook kernel took 2.7 s from its last cell to its end, 0.3 s without that collection;
`benchmarks/bench_kernel_exit.py`). Frozen objects (`gc.freeze`) are left out of collections.

Freezing the heap at exit leaves out the collection of reference cycles then: objects reachable only from
a cycle are not finalized at exit. ecgkeras closes and renames every file it writes explicitly
(`ecgkeras.files`), so none of its output depends on it; the operating system frees the memory.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
from typing import Iterator


def freeze_heap_at_exit() -> None:
    """At interpreter exit (after the exit handlers registered later), freeze every object, so that
    finalization's last collection does not traverse them."""
    atexit.register(gc.freeze)


@contextlib.contextmanager
def existing_objects_frozen() -> Iterator[None]:
    """Inside the block, full collections (a library's `gc.collect()`) see only the objects made in it; a
    heap the process had frozen itself (say, before forking) stays frozen after it."""
    frozen_before = gc.get_freeze_count()
    gc.freeze()
    try:
        yield
    finally:
        if not frozen_before:
            gc.unfreeze()
