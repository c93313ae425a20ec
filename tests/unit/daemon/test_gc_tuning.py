"""What the daemon built at start is left out of garbage collection, and
start-up's garbage is not kept for ever."""

import gc
import weakref

from monitor.daemon import gc_tuning


class FakeCollector:

    def __init__(self):
        self.calls = []

    def collect(self):
        self.calls.append('collect')

    def freeze(self):
        self.calls.append('freeze')

    def get_freeze_count(self):
        return 7


def test_start_ups_garbage_is_freed_before_the_rest_is_frozen():
    collector = FakeCollector()
    assert gc_tuning.freeze_start_up_objects(collector) == 7
    assert collector.calls == ['collect', 'freeze']


class Cycle:

    def __init__(self):
        self.me = self


def test_live_objects_are_frozen_and_later_garbage_still_collected():
    start_up_garbage = weakref.ref(Cycle())
    try:
        frozen = gc_tuning.freeze_start_up_objects()
        assert frozen == gc.get_freeze_count() > 0
        # Freed, not frozen with the rest (no collection would free it).
        assert start_up_garbage() is None
        later_garbage = weakref.ref(Cycle())
        gc.collect()
        assert later_garbage() is None
    finally:
        gc.unfreeze()
