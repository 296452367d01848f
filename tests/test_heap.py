"""ecgkeras.heap: a process that imported ecgkeras freezes its heap when it exits (its last collection would
traverse TensorFlow's objects for seconds), and a block can hide the objects that already exist from a
library's full collection."""

from __future__ import annotations

import gc
import subprocess
import sys

from ecgkeras.heap import existing_objects_frozen


def test_a_process_that_imported_ecgkeras_has_its_heap_frozen_at_exit():
    # an exit handler registered before the import runs after ecgkeras' own (they run last in, first out)
    code = "import atexit, gc; atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0)); import ecgkeras"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["frozen", "True"]


def test_a_collection_inside_the_block_sees_only_the_objects_made_in_it():
    before = gc.get_freeze_count()
    with existing_objects_frozen():
        assert gc.get_freeze_count() > before
        cycle = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1  # the new cycle is still collected
    assert gc.get_freeze_count() == 0


def test_a_heap_the_process_froze_itself_stays_frozen_after_the_block():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with existing_objects_frozen():
            pass
        assert gc.get_freeze_count() >= frozen
    finally:
        gc.unfreeze()
