"""The scheduler's ping lanes and how the ping slots are shared among them.

Three lanes, each a pool drained by at most its own number of pings in
flight; a ping starts as soon as a slot of its lane frees, so a hung agent
holds one slot, never a round:

- the *answering lane*, for domains whose last ping was answered (or that
  were never pinged);
- the *confirming lane*, for domains whose last ping missed, until they
  have missed their failure threshold;
- the *silent lane*, for domains past it.

Every ping holds one of ``max_concurrent_pings`` slots (``lane_sizes``).
The confirming lane may take every slot but a reserve kept for the
answering lane and the few of the silent lane, and gets a freed slot
before the others: every suspect is confirmed at once, none waits for
another's confirmation, while the answering domains keep at least their
reserve. The answering lane may use every slot the others leave free.

Ended pings come back through one mailbox, emptied by one green thread
while any ping is in flight; it hands each outcome to the scheduler.
"""

from monitor import concurrency
from monitor.virt import ping_pool

# Seconds between two takes of ended pings while they stream in: at
# 5,000 guests a round's pings end about 1,500 a second, and waking the
# green side every 10 ms cost about 1 % of a core more than every 50 ms.
# A ping that ends after a quiet spell (a confirmation, a small host) is
# taken at once; one in a stream waits 50 ms at most.
MAILBOX_LINGER = 0.05


def lane_sizes(max_concurrent_pings):
    """Slots the answering lane always has, the most the confirming lane
    may take, and the most the silent lane may take (0: it shares the
    confirming lane). The answering lane may also use the slots the
    others leave free.

    A fifth of the slots (at least one, with two or more) is kept for the
    answering domains, a tenth (at least one, with three or more) may serve
    domains already past their failure threshold, and the confirming lane
    may take all the rest. A confirmation holds its slot for libvirt's
    guest-sync wait (5 s, or ping_timeout with fast confirmation), so
    confirmations queued behind each other add up: with 5 slots, three
    suspects are confirmed at once (two, when a third of the slots was
    theirs), and with 50, 35.
    """
    reserve = 1 if max_concurrent_pings >= 2 else 0
    reserve = max(reserve, max_concurrent_pings // 5)
    silent = (max(1, max_concurrent_pings // 10)
              if max_concurrent_pings >= 3 else 0)
    confirming = max(1, max_concurrent_pings - reserve - silent)
    return reserve, confirming, silent


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
        _reserve, confirming, silent = lane_sizes(max_concurrent_pings)
        self._on_ended = on_ended
        self._mailbox = ping_pool.Mailbox(
            linger=MAILBOX_LINGER if native else 0)

        def pool(size, shared=(), priority=False):
            if native:
                return ping_pool.NativePool(size, self._mailbox, shared,
                                            priority)
            return ping_pool.GreenPool(size, self._mailbox, execute, shared)

        semaphore = (ping_pool.NativePool.semaphore if native
                     else ping_pool.GreenPool.semaphore)
        every = semaphore(max_concurrent_pings)
        self.answering = Lane(pool(max_concurrent_pings, (every,)))
        # The pools' sizes bound the confirming and silent lanes; the
        # confirming lane's priority hands it every slot freed while a
        # confirmation waits.
        self.confirming = Lane(pool(confirming, (every,), True))
        self.silent = (Lane(pool(silent, (every,)))
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
