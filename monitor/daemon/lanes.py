"""The scheduler's ping lanes and how the ping slots are shared among them.

Three lanes, each a pool drained by at most its own number of pings in
flight; a ping starts as soon as a slot of its lane frees, so a hung agent
holds one slot, never a round:

- the *answering lane*, for domains whose last ping was answered (or that
  were never pinged);
- the *confirming lane*, for domains whose last ping missed, until they
  have missed their failure threshold;
- the *silent lane*, for domains past it.

Every ping holds one of ``max_concurrent_pings`` slots; those of domains
that missed also one of the slots kept for them (``lane_sizes``), taken
first, and get a freed slot before the answering domains. The answering
lane may use every slot the others leave free.

Ended pings come back through one mailbox, emptied by one green thread
while any ping is in flight; it hands each outcome to the scheduler.
"""

from monitor import concurrency
from monitor.virt import ping_pool


def lane_sizes(max_concurrent_pings):
    """Slots the answering lane always has, slots for domains that missed
    (confirming and silent lanes together) and, of those, the most the
    silent lane may take. The answering lane may also use the slots the
    others leave free.

    A third of the slots (at least two while that leaves one) may go to
    domains whose last ping missed: each ping to a hung agent holds its
    slot for libvirt's 5 s guest-sync floor, and a third of 50 slots
    confirms 32 hung agents per 10 s. At most a third of those (at least
    one) serves domains already past their failure threshold, so that
    guests reported long ago never hold up the confirmation of a new
    failure. With fewer than two such slots, both share one lane.
    """
    missed = max(1, min(2, max_concurrent_pings - 1),
                 max_concurrent_pings // 3)
    silent = max(1, missed // 3) if missed >= 2 else 0
    return max(1, max_concurrent_pings - missed), missed, silent


class Lane:
    """One pool of pings; knows how many of its pings have not been
    collected yet, and wakes whoever waits for it to be idle."""

    def __init__(self, pool):
        self.pool = pool
        self.in_flight = 0
        self._idle = None

    def add(self, func, args, tag):
        self.in_flight += 1
        self.pool.submit(func, args, tag)

    def ended(self):
        self.in_flight -= 1
        if not self.in_flight and self._idle is not None:
            idle, self._idle = self._idle, None
            idle.send()

    @property
    def busy(self):
        return self.in_flight > 0

    def wait_idle(self, timeout=None):
        """Wait until every ping of the lane has been collected, at most
        ``timeout`` seconds; return True when idle."""
        while self.busy:
            if self._idle is None:
                self._idle = concurrency.Event()
            idle = self._idle
            with concurrency.deadline(timeout):
                idle.wait()
            if idle is self._idle:  # timed out, never sent
                break
        return not self.busy


class Lanes:
    """The three lanes of one scheduler over ``max_concurrent_pings``
    slots. ``native``: pings run on native threads of their own;
    otherwise each runs in a green thread through ``execute`` (tests: a
    direct call). ``on_ended(tag, ok, value)`` receives each ended ping,
    in the green thread that collects them."""

    def __init__(self, max_concurrent_pings, on_ended, native=True,
                 execute=concurrency.run_native):
        _answering, missed, silent = lane_sizes(max_concurrent_pings)
        self._on_ended = on_ended
        self._mailbox = ping_pool.Mailbox(linger=0.01 if native else 0)

        def pool(size, shared=(), priority=False):
            if native:
                return ping_pool.NativePool(size, self._mailbox, shared,
                                            priority)
            return ping_pool.GreenPool(size, self._mailbox, execute, shared)

        semaphore = (ping_pool.NativePool.semaphore if native
                     else ping_pool.GreenPool.semaphore)
        every = semaphore(max_concurrent_pings)
        for_missed = semaphore(missed)
        self.answering = Lane(pool(max_concurrent_pings, (every,)))
        self.confirming = Lane(pool(missed, (for_missed, every), True))
        self.silent = (Lane(pool(silent, (for_missed, every), True))
                       if silent else self.confirming)
        self._all = (self.answering, self.confirming, self.silent)
        self._collecting = False

    def start(self, lane, func, args, tag):
        """Queue ``func(*args)`` in ``lane``; its outcome goes to
        ``on_ended`` with ``tag``."""
        lane.add(func, args, (tag, lane))
        if not self._collecting:
            self._collecting = True
            concurrency.spawn_n(self._collect)

    def _collect(self):
        """Take ended pings from the mailbox while any is in flight."""
        try:
            while any(lane.busy for lane in self._all):
                for (tag, lane), ok, value in self._mailbox.wait():
                    self._on_ended(tag, ok, value)
                    lane.ended()
        finally:
            self._collecting = False
