"""Native calls a recovery gave up on and that have not returned yet.

A screenshot, reset or destroy of a QEMU that no longer answers its
monitor may block in libvirt for ever. The recovery that started it stops
waiting at its deadline; the call keeps its native thread, and is kept
here, per domain, until it returns: no other call is started on that
domain meanwhile (it would only get stuck behind the first), the metrics
count it and the status shows it.

Green side only. Whether a call returned is looked at when somebody asks
(a recovery of that domain, a scrape, the status, the dispatcher's loop),
and logged then, once.
"""

import logging
import time
import typing

LOG = logging.getLogger(__name__)


class StuckCall(typing.NamedTuple):
    uuid: str
    name: str
    # recovery_deadlines.STEPS
    step: str
    # Epoch seconds the call started.
    since: float
    # A concurrency.NativeCall (or anything with ``done``, ``running_for``
    # and ``close()``).
    call: typing.Any


class StuckCalls:

    def __init__(self, clock=time.time):
        self._clock = clock
        self._calls = {}

    def add(self, uuid, name, step, call):
        """``call`` on ``uuid`` passed its deadline and still runs."""
        self._calls[uuid] = StuckCall(uuid, name, step,
                                      self._clock() - call.running_for, call)

    def get(self, uuid):
        """The stuck call of domain ``uuid``, or None."""
        self.prune()
        return self._calls.get(uuid)

    def __len__(self):
        self.prune()
        return len(self._calls)

    def prune(self):
        """Forget the calls that returned meanwhile, saying so."""
        for uuid, stuck in list(self._calls.items()):
            if not stuck.call.done:
                continue
            del self._calls[uuid]
            LOG.warning('Domain %s (%s): the %s that was stuck in libvirt '
                        'returned after %.0f s; the domain can be recovered '
                        'again', stuck.name, uuid, stuck.step,
                        stuck.call.running_for)
            stuck.call.close()

    def snapshot(self):
        """The stuck calls as plain values, oldest first."""
        self.prune()
        return [{'name': s.name, 'uuid': s.uuid, 'step': s.step,
                 'since': s.since}
                for s in sorted(self._calls.values(), key=lambda s: s.since)]
