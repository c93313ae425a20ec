"""Keeps Python's garbage collector off what the daemon built at start.

A full collection walks every container object in the process. About
100,000 of them are the modules, classes, configuration and clients the
daemon built before its first round, which live as long as the process.
Measured on the simulated edge (5,000 guests, interval 10, bench/scale.py
set-up): a full collection came about every 20 s and took 0.1 s; with
those objects moved to the permanent generation (``gc.freeze``), which no
collection walks, it took 0.01 s, and the collector's share of a round
fell from about 0.08 s to 0.03 s. Raising the young generation's
threshold instead made it worse (each young collection walks more of the
per-ping objects that survive anyway).

The price: a frozen object that later ends in a reference cycle is never
freed. What is frozen is built once per process; a SIGHUP reload
replaces a few option values, not the objects that hold them.
"""

import gc


def freeze_start_up_objects(collector=gc):
    """Free start-up's garbage, then move every object still alive to the
    permanent generation; returns how many objects are frozen."""
    collector.collect()
    collector.freeze()
    return collector.get_freeze_count()
