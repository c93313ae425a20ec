"""Host operations that hold a guest's agent or freeze its filesystems.

Backups and snapshots quiesce a guest through its agent: a filesystem
freeze (virDomainFSFreeze, or the one a quiesced snapshot makes) holds
libvirt's agent job while qemu-ga's freeze hook quiesces the guest's
services, and then leaves the filesystems frozen until the thaw. The guest
works throughout; only its writes wait. What libvirt and the agent show
then (measured on libvirt 9.0, QEMU 7.2, qemu-ga 7.2):

* while the freeze command runs, a guest-ping waits for the agent job up
  to 30 s, then fails with VIR_ERR_OPERATION_TIMEOUT "cannot acquire
  state change lock (held by agent=remoteDispatchDomainFSFreeze)":
  :data:`Outcome.BUSY`, nobody's miss; ``jobInfo`` shows no job (the agent
  job is not a domain job);
* while frozen, qemu-ga answers guest-ping and guest-fsfreeze-status
  ("frozen") and refuses most other commands.

A freeze that is never thawed (a backup tool that died between freeze and
thaw) leaves a guest whose writes hang for good, and a freeze command
whose agent never answers holds the agent job for good; both answer no
ping of their own. So each stays nobody's miss only for ``frozen_grace``
seconds from the first ping that met it; after that, each such ping
counts as a miss whose detail says why ('filesystems frozen for 312 s'),
and the guest is reported on that alone: its I/O is not looked at (reads
go on while writes hang).

Plain code: :class:`HostOperations` rewrites a round's ping results
(``monitor.health.ping_outcome.PingResult``).
"""

from oslo_config import cfg

from monitor.health.ping_outcome import Outcome

GROUP = 'monitor'

OPTS = [
    cfg.IntOpt(
        'frozen_grace',
        default=300,
        min=10,
        max=86400,
        help="""
Seconds a guest may stay busy with a host operation before it is reported:
its filesystems frozen (guest-fsfreeze-status says so while its agent
still answers pings), or its agent held by another command (libvirt
cannot start a ping because a freeze, a quiesced snapshot or another
client's agent command holds the agent). Until then such a guest is not
counted as failing; after it, each ping counts as a miss and the guest is
reported with the reason, e.g. 'filesystems frozen for 312 s'.

Backups and snapshots freeze a guest for seconds (a quiesced disk-only
snapshot froze the lab guest for 0.1 s, a freeze whose hook quiesced for
40 s held the agent that long); a freeze nobody thaws hangs every writer
in the guest for good (Linux warns of hung tasks after 120 s). The default
leaves slow quiesce hooks (databases flushing) several minutes.

The freeze status is asked every 30 s per guest, so a freeze is reported
up to 30 s later than the grace, plus the failure threshold's pings.

Possible values:

* An integer from 10 to 86400. Default 300.

Related options:

* failure_threshold
"""),
]


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


def list_opts():
    return [(GROUP, OPTS)]


FROZEN = 'filesystems frozen'
HELD = 'guest agent held by another command'


class HostOperations:
    """Since when each domain has been frozen or had its agent held.

    Kept in memory by the caller (the scheduler): after a daemon restart a
    spell starts again at the next ping that meets it.
    """

    def __init__(self, frozen_grace=300):
        self.frozen_grace = frozen_grace
        # uuid -> wall-clock start of the first ping that met the spell.
        self._since = {}
        # (uuid, text) of spells begun or ended since the caller last
        # took them (:meth:`take_changes`), for its log.
        self._changes = []

    @classmethod
    def from_conf(cls, conf):
        return cls(conf.monitor.frozen_grace)

    def judge(self, uuid, result):
        """``result`` of ``uuid``'s ping as it counts: unchanged, or a
        miss once a freeze or held agent outlasts the grace."""
        if result.outcome is Outcome.BUSY:
            what = '%s (%s)' % (HELD, result.detail)
        elif result.outcome is Outcome.OK and result.frozen:
            what = FROZEN
        else:
            if (result.outcome is not Outcome.OK or result.frozen is False) \
                    and self._since.pop(uuid, None) is not None:
                # Thawed, or something else now speaks for the guest.
                self._changes.append((uuid, 'no longer frozen or held'))
            # An answered ping whose freeze status was not asked keeps
            # the spell open without counting.
            return result
        if uuid not in self._since:
            self._changes.append((uuid, '%s; not counted as failing for up '
                                  'to %d s' % (what, self.frozen_grace)))
        since = self._since.setdefault(uuid, result.started_at)
        held_for = result.started_at + result.duration - since
        if held_for <= self.frozen_grace:
            return result
        return result._replace(
            outcome=Outcome.MISSED, held_for=held_for,
            detail='%s for %.0f s' % (what, held_for))

    def judge_round(self, results):
        """A round's ``{uuid: PingResult}`` as they count."""
        return {uuid: self.judge(uuid, result)
                for uuid, result in results.items()}

    def take_changes(self):
        """The (uuid, text) of spells begun or ended since the last
        call, oldest first."""
        changes, self._changes = self._changes, []
        return changes

    def held_since(self, uuid):
        """Wall-clock start of ``uuid``'s spell, or None."""
        return self._since.get(uuid)

    def keep_only(self, uuids):
        """Drop the spells of domains not in ``uuids``."""
        for uuid in set(self._since) - set(uuids):
            del self._since[uuid]
