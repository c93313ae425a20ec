"""The I/O counters of the guests that just missed a ping, taken for the
tracker's corroboration in one bounded libvirt call per round."""

import logging

from monitor import concurrency
from monitor.virt import stats as libvirt_stats

LOG = logging.getLogger(__name__)


class CounterSnapshots:
    """The I/O counters of guests that just missed a ping, for the
    tracker's corroboration, without ever holding a round up for long.

    One ``libvirt_stats.collect`` call for all of a round's domains, in a
    native thread, at most one in flight. The round waits for it at most
    ``timeout`` seconds: block counters come from each QEMU's monitor, and
    libvirt waits without a bound for a QEMU stuck on lost storage. A
    call still running then is left to end on its own and its answer is
    dropped; until it ends no other call starts (no piling up of native
    threads behind a stuck libvirtd), and the domains of those rounds get
    no counters, which reports them as without corroboration.
    """

    def __init__(self, execute=concurrency.run_native, timeout=2.0,
                 collect=libvirt_stats.collect):
        self._execute = execute
        self.timeout = timeout
        self._collect = collect
        self._in_flight = None
        # Said once when calls stop answering in time, once when they do
        # again.
        self._late = False
        # Types of unexpected exceptions already logged with a traceback.
        self._errors_logged = set()

    def take(self, conn, domains):
        """{uuid: DomainCounters} of ``domains`` (virDomain objects);
        empty when they could not be had in time."""
        if conn is None or not domains:
            return {}
        if self._in_flight is not None:
            LOG.debug('I/O counters of %d domain(s) not taken: the last '
                      'stats call has not ended yet', len(domains))
            return {}
        call = concurrency.spawn(self._call, conn, domains)
        self._in_flight = call
        call.link(self._ended)
        answer = None
        with concurrency.deadline(self.timeout):
            answer = call.wait()
        if answer is None:
            if not self._late:
                self._late = True
                LOG.warning('libvirt\'s domain stats did not answer within '
                            '%g s; guests that miss pings meanwhile are '
                            'judged without their I/O counters',
                            self.timeout)
            return {}
        if self._late:
            self._late = False
            LOG.info('libvirt\'s domain stats answer in time again')
        return answer

    def _ended(self, call):
        if self._in_flight is call:
            self._in_flight = None

    def _call(self, conn, domains):
        try:
            collected = self._execute(self._collect, conn, domains)
        except libvirt_stats.StatsUnavailable as exc:
            LOG.info('No I/O counters from libvirt: %s', exc)
            return {}
        except Exception as exc:  # boundary: counters are an extra, the
            # round's results must not be lost for them
            kind = type(exc).__name__
            if kind in self._errors_logged:
                LOG.debug('Unexpected error taking I/O counters again: '
                          '%s: %s', kind, exc)
            else:
                # Once per kind: a binding that always fails this way
                # would otherwise log a traceback every round.
                self._errors_logged.add(kind)
                LOG.exception('Unexpected error taking I/O counters; the '
                              'guests that missed are judged without them')
            return {}
        for uuid, text in collected.errors.items():
            LOG.debug('No I/O counters for domain %s: %s', uuid, text)
        return collected.counters
