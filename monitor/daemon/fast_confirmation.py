"""Fast confirmation: a suspect's agent response timeout lowered to the
ping timeout while its silence is confirmed.

Once a guest agent has timed out, libvirt makes every later command to it
wait for a guest-sync first: 5 s, or the domain's agent response timeout
when that is shorter. Each confirmation ping of a silent guest therefore
costs 5 s, unless that timeout is lowered. So, when a domain's first
confirmation ping starts (it missed one ping), its timeout is read, written
to the state directory's journal (``store.agent_timeouts``) and lowered to
``ping_timeout``; it is set back as soon as the guest answers (in the same
native call as the answered ping), leaves confirmation otherwise (reported,
answered while the round was applied, forgotten), or the daemon stops. A
daemon killed in between restores, after its first round, what the
journal says it lowered; a domain that round finds silent again keeps the
lowered value for its new confirmation and gets the old one back when
that ends. A restore leaves alone a domain started again since (its
timeout went back to libvirt's default) and one whose timeout somebody else
changed meanwhile.

What it trades (docs/detection-floor.md): during the confirmation the
guest has ``ping_timeout`` instead of 5 s to answer each confirmation ping,
and any other agent user (a quiesce, set-password) on that one domain gets
``ping_timeout`` instead of its own wait.

:meth:`ping` runs in the confirming lane's native threads: it never logs,
it queues what the green side says in :meth:`settle`.
"""

import collections
import logging
import urllib.parse

from oslo_config import cfg

from monitor import concurrency
from monitor.errors import AgentTimeoutUnchanged
from monitor.health.ping_outcome import Outcome
from monitor.store import agent_timeouts
from monitor.virt import agent_timeout
from monitor.virt.agent_timeout import NOWAIT

LOG = logging.getLogger(__name__)

FAST_CONFIRMATION_OPTS = [
    cfg.BoolOpt('fast_confirmation',
                default=True,
                help="""
Lower a guest's agent response timeout (virsh guest-agent-timeout) to
ping_timeout while its silence is confirmed, and restore the previous value
as soon as the guest answers, is reported, or the daemon stops (a daemon
killed in between restores it at its next start). libvirt makes every
command to an agent that timed out wait up to 5 s for a guest-sync, or this
timeout when shorter: each confirmation then costs ping_timeout instead of
5 s (crash to notification about 11 s instead of 17 s at the defaults).
The trade: during the confirmation a slow but living agent has ping_timeout
instead of 5 s to answer, and another agent user on that one guest (a
quiesce, set-password) waits at most ping_timeout. Default true.

Related options: ping_timeout, agent_status_dir."""),
    cfg.StrOpt('agent_status_dir',
               default=agent_timeout.STATUS_DIR, regex='^/',
               help="""
Directory where libvirt's QEMU driver keeps the status files of running
domains (<name>.xml); fast confirmation reads a guest's agent response
timeout from there before lowering it, since libvirt has no call to read
it (only with a local connection_uri). Where a file cannot be read the
previous value is taken to be libvirt's default (-1) and restored as
such. An absolute path. Default
/run/libvirt/qemu (a system libvirtd)."""),
]


def list_opts():
    return [('monitor', FAST_CONFIRMATION_OPTS)]


def register_opts(conf):
    conf.register_opts(FAST_CONFIRMATION_OPTS, group='monitor')


# How long a batch of restores may run before it is said to be stuck: a
# set of the timeout is one short libvirt call per domain.
_RESTORE_BOUND = 10.0

_Said = collections.namedtuple('_Said', 'level uuid name text args')


class FastConfirmation:

    def __init__(self, host, journal, ping_timeout, enabled=True,
                 status_dir=agent_timeout.STATUS_DIR):
        """``host``: the libvirt host (``ping``, ``connection``);
        ``journal``: an AgentTimeoutJournal."""
        self._host = host
        self._journal = journal
        self.lowered_to = max(1, int(ping_timeout))
        self.enabled = enabled
        self._status_dir = status_dir
        # uuid -> libvirt domain object, of the domains lowered by this
        # process (the journal's entries from before it have none).
        self._doms = {}
        # What native threads have to say, said by the green side.
        self._said = collections.deque()
        self._restoring = None
        self._stuck_said = False

    @classmethod
    def from_conf(cls, conf, host):
        # The status files are those of the libvirtd on this host: with a
        # remote URI the same name may be another domain.
        local = urllib.parse.urlsplit(
            getattr(host, 'uri', '') or '').hostname in (None, '',
                                                         'localhost')
        return cls(host, agent_timeouts.AgentTimeoutJournal.from_conf(conf),
                   conf.monitor.ping_timeout,
                   enabled=conf.monitor.fast_confirmation,
                   status_dir=conf.monitor.agent_status_dir if local
                   else None)

    @classmethod
    def off(cls, host, ping_timeout=1):
        """Never lowers anything and keeps no journal."""
        return cls(host, agent_timeouts.AgentTimeoutJournal(None),
                   ping_timeout, enabled=False)

    @property
    def lowered(self):
        """uuid -> Lowered, the timeouts lowered and not restored yet."""
        return self._journal.entries()

    # -- native side -------------------------------------------------------

    def ping(self, info, timeout):
        """The confirmation ping of ``info``: lower its agent timeout
        first (once per confirmation), restore it when the guest answers.
        Never raises, like the ping."""
        if self.enabled and getattr(info, 'dom', None) is not None \
                and info.uuid not in self._journal.entries():
            self._lower(info)
        result = self._host.ping(info, timeout)
        if result.outcome is Outcome.OK and info.uuid in self._doms:
            self._restore(info.uuid, self._journal.entries().get(info.uuid))
        return result

    def _lower(self, info):
        dom = info.dom
        reading = agent_timeout.read(info.name, self._status_dir)
        if reading.known and NOWAIT <= reading.seconds <= self.lowered_to:
            # Already as short (an operator's choice): nothing to gain.
            return
        lowered = agent_timeouts.Lowered(
            info.name, reading.seconds, reading.known, self.lowered_to,
            agent_timeout.domain_id(dom))
        try:
            self._journal.record(info.uuid, lowered)
        except OSError as exc:
            self._say(logging.WARNING, info.uuid, info.name,
                      'cannot record its agent response timeout (%s); its '
                      'confirmation waits for libvirt\'s guest-sync', exc)
            return
        try:
            agent_timeout.set_timeout(dom, self.lowered_to)
        except AgentTimeoutUnchanged as exc:
            self._forget(info.uuid)
            self._say(logging.WARNING, info.uuid, info.name,
                      'cannot lower its agent response timeout: %s', exc)
            return
        self._doms[info.uuid] = dom
        self._say(logging.INFO, info.uuid, info.name,
                  'agent response timeout lowered from %s%s to %d s while '
                  'its silence is confirmed',
                  agent_timeout.describe(reading.seconds),
                  '' if reading.known else ' (assumed)', self.lowered_to)

    def _restore(self, uuid, lowered):
        """Set ``uuid``'s timeout back; True when nothing is left to do."""
        if lowered is None:
            self._doms.pop(uuid, None)
            return True
        dom = self._doms.get(uuid)
        try:
            if dom is None:
                conn = self._host.connection
                if conn is None:
                    return False
                dom = agent_timeout.lookup(conn, uuid)
            why = self._not_ours(dom, lowered)
            if why is None:
                agent_timeout.set_timeout(dom, lowered.previous)
                self._say(logging.INFO, uuid, lowered.name,
                          'agent response timeout restored to %s%s',
                          agent_timeout.describe(lowered.previous),
                          '' if lowered.known else ' (assumed)')
            else:
                self._say(logging.INFO, uuid, lowered.name,
                          'agent response timeout left as it is: %s', why)
        except AgentTimeoutUnchanged as exc:
            if not exc.gone:
                self._say(logging.WARNING, uuid, lowered.name,
                          'cannot restore its agent response timeout to %s '
                          '(tried again later): %s',
                          agent_timeout.describe(lowered.previous), exc)
                return False
        self._doms.pop(uuid, None)
        return self._forget(uuid)

    def _not_ours(self, dom, lowered):
        """Why the timeout must be left alone, or None to restore it."""
        if lowered.domain_id is not None:
            now = agent_timeout.domain_id(dom)
            if now is not None and now != lowered.domain_id:
                return 'the domain was started again since'
        current = agent_timeout.read(lowered.name, self._status_dir)
        if current.known and current.seconds != lowered.lowered_to:
            return 'changed meanwhile to %s' % agent_timeout.describe(
                current.seconds)
        return None

    def _forget(self, uuid):
        try:
            self._journal.forget(uuid)
        except OSError as exc:
            self._say(logging.WARNING, uuid, None,
                      'cannot update the agent timeout journal: %s', exc)
            return False
        return True

    def _restore_all(self, uuids):
        entries = self._journal.entries()
        for uuid in uuids:
            self._restore(uuid, entries.get(uuid))

    def _say(self, level, uuid, name, text, *args):
        self._said.append(_Said(level, uuid, name, text, args))

    # -- green side --------------------------------------------------------

    def settle(self, confirming, names=None):
        """After a round: restore, in a native thread, the timeouts of
        the domains no longer being confirmed (``confirming``: the UUIDs
        still are), those lowered before a restart included; say what
        the native side did. Does not wait."""
        self._say_all(names)
        if self._restoring is not None:
            if not self._restoring.done:
                if (self._restoring.running_for > _RESTORE_BOUND
                        and not self._stuck_said):
                    self._stuck_said = True
                    LOG.warning('Restoring agent response timeouts has not '
                                'returned for %.0f s; retried once it does',
                                self._restoring.running_for)
                return
            self._restoring.close()
            self._restoring, self._stuck_said = None, False
        done = [uuid for uuid in self._journal.entries()
                if uuid not in confirming]
        if done:
            self._restoring = concurrency.NativeCall(
                self._restore_all, done, name='agent-timeout')

    def restore_all(self, timeout):
        """At stop: restore every lowered timeout, waiting at most
        ``timeout`` seconds; what is left is restored at the next
        start."""
        if self._restoring is not None:
            self._restoring.wait(timeout / 2)
        left = self._journal.entries()
        if left and (self._restoring is None or self._restoring.done):
            call = concurrency.NativeCall(self._restore_all, list(left),
                                          name='agent-timeout')
            call.wait(timeout / 2)
        self._say_all()
        left = self._journal.entries()
        if left:
            LOG.warning('Agent response timeouts of %d domain(s) not '
                        'restored before the stop (%s); restored at the '
                        'next start', len(left),
                        ', '.join(sorted(lowered.name
                                         for lowered in left.values())))

    def _say_all(self, names=None):
        while self._said:
            said = self._said.popleft()
            name = said.name
            if name is None and names is not None:
                name = getattr(names.get(said.uuid), 'name', None)
            LOG.log(said.level, 'Domain %s (%s): ' + said.text,
                    name or '?', said.uuid, *said.args)
