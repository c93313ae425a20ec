"""Is a guest whose agent fell silent still working? Its own I/O tells.

A silent agent alone does not prove a dead guest: qemu-ga may hang, crash
or be stopped by an upgrade while the guest serves its users. Restarting
such a guest is an outage the monitor caused. So, like VMware HA's I/O
stats window, the silence is corroborated with counters libvirt keeps for
the guest: if its disks or network kept working over the silent period,
the guest is alive and is not reported.

Plain code: :func:`assess` takes two :class:`DomainCounters` of one domain
(taken by ``monitor.virt.stats``, at the first missed ping and at the
threshold miss) and returns an :class:`Assessment`.

What counts as the guest's own work:

* Disk requests: reads, writes and flushes of every disk. Only the guest
  issues them (block jobs and backups use their own accounting), and a
  guest whose kernel died issues none.
* Packets the guest sent. Received packets are not evidence: the network
  keeps delivering to a dead guest (broadcasts, retransmissions) until its
  queue fills.
* Not vCPU time: a panicked kernel spins (``panic=0``, or a soft lockup)
  and burns a whole vCPU. It is reported only to explain a verdict.

Each counter must rise above a small noise floor, so that what a failing
guest's kernel still finishes on its own (a journal commit in flight, ARP
replies, TCP retransmissions) does not make it look alive.

Fail towards reporting: when the counters cannot be compared (no snapshot
at the first miss, the stats call failed, the domain has neither disks nor
interfaces, every device was replaced in between) the verdict is
:data:`Activity.UNKNOWN` and the caller reports as it would without
corroboration. Only positive evidence of work holds a notification back.
"""

import enum
import typing

from oslo_config import cfg

GROUP = 'monitor'

OPTS = [
    cfg.BoolOpt(
        'corroborate_with_io',
        default=True,
        help="""
Before reporting a guest whose agent stopped answering, check whether the
guest itself kept working: if its disk requests or the packets it sent grew
beyond the noise floors between the first missed ping and the failure
threshold, the agent is logged as unresponsive on an active guest, counted
in the metric guest_health_monitor_agent_silent_guest_active_total, and
the guest is not reported. It is assessed again on each further miss, so a
guest that stops working later is still reported.

On by default: a false alarm makes the HA engine restart a VM that works,
while a guest whose kernel panicked or hung does no I/O at all and is
reported as before. Off: the agent's silence alone reports the guest (the
behaviour of Masakari's introspective monitor). A guest with neither disks
nor network interfaces is always reported on the agent's silence.

Possible values:

* true (default), false.

Related options:

* io_noise_disk_requests, io_noise_sent_packets: the noise floors.
"""),
    cfg.IntOpt(
        'io_noise_disk_requests',
        default=4,
        min=0,
        max=1000000,
        help="""
Disk requests (reads, writes and flushes of all the guest's disks together)
between the first missed ping and the failure threshold that still count as
noise; more mean the guest is active. The default covers a journal commit
that a failing guest's kernel still completes on its own (a few writes and
flushes).

Possible values:

* An integer from 0 to 1000000. Default 4. 0: any disk request shows
  activity.

Related options:

* corroborate_with_io
"""),
    cfg.IntOpt(
        'io_noise_sent_packets',
        default=10,
        min=0,
        max=1000000,
        help="""
Packets sent by the guest (all interfaces together) between the first
missed ping and the failure threshold that still count as noise; more mean
the guest is active. The default covers what a guest kernel sends without
its userspace over a few seconds: ARP and neighbour replies, TCP
acknowledgements and retransmissions. Raise it to rely on disk I/O alone
for guests that get a lot of traffic.

Possible values:

* An integer from 0 to 1000000. Default 10.

Related options:

* corroborate_with_io
"""),
]


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


def list_opts():
    return [(GROUP, OPTS)]


# Domain states as the stats edge reports them (DomainCounters.state).
RUNNING = 'running'
CRASHED = 'crashed'
PAUSED = 'paused'
OTHER = 'other'


class DiskCounters(typing.NamedTuple):
    # Target device name ('vda'): the key for comparing two snapshots.
    name: str
    read_requests: int
    read_bytes: int
    write_requests: int
    write_bytes: int
    flush_requests: int


class NicCounters(typing.NamedTuple):
    # Host-side device name ('vnet3'), or the interface's index when
    # libvirt gives no name.
    name: str
    # From the guest's point of view, as libvirt reports them.
    rx_bytes: int
    rx_packets: int
    tx_bytes: int
    tx_packets: int


class DomainCounters(typing.NamedTuple):
    """One domain's counters at one moment, as plain values."""

    uuid: str
    name: str
    # Seconds on a monotonic clock when the counters were taken.
    at: float
    # RUNNING, CRASHED, PAUSED or OTHER.
    state: str
    # Sum of every vCPU's time in nanoseconds; None when not reported.
    vcpu_time_ns: typing.Optional[int]
    vcpu_count: int
    # Only devices whose counters libvirt reported.
    disks: typing.Tuple[DiskCounters, ...] = ()
    nics: typing.Tuple[NicCounters, ...] = ()


class Activity(enum.Enum):
    # The guest did work of its own: its agent is unresponsive, the guest
    # is not dead. Not reported.
    ACTIVE = 'active'
    # No I/O above the noise floors: the silence is the guest's. Reported.
    SILENT = 'silent'
    # Nothing to compare: reported, as without corroboration.
    UNKNOWN = 'unknown'


class NoiseFloors(typing.NamedTuple):
    disk_requests: int = 4
    sent_packets: int = 10

    @classmethod
    def from_conf(cls, conf):
        return cls(disk_requests=conf.monitor.io_noise_disk_requests,
                   sent_packets=conf.monitor.io_noise_sent_packets)


class Assessment(typing.NamedTuple):
    activity: Activity
    # Operator text, e.g. '23 disk requests, 0 packets sent in 12 s'.
    reason: str
    # Growth over the window; None when no device could be compared.
    disk_requests: typing.Optional[int] = None
    sent_packets: typing.Optional[int] = None
    # Share of the vCPUs' time spent running, 0..1; None when unknown.
    vcpu_busy: typing.Optional[float] = None
    seconds: typing.Optional[float] = None


def assess(before, after, floors=NoiseFloors()):
    """Compare two snapshots of one domain, ``before`` first.

    ``before`` may be None (no snapshot at the first miss): the verdict is
    then UNKNOWN.
    """
    if before is None or after is None:
        return Assessment(Activity.UNKNOWN,
                          'no I/O counters from the start of the silence')
    if before.uuid != after.uuid:
        raise ValueError('counters of two domains: %s and %s'
                         % (before.uuid, after.uuid))
    seconds = max(after.at - before.at, 0.0)
    vcpu_busy = _vcpu_busy(before, after, seconds)
    if after.state == CRASHED:
        # libvirt itself says so (pvpanic, on_crash=preserve): counters
        # cannot prove otherwise.
        return Assessment(Activity.SILENT, 'libvirt reports the guest '
                          'crashed', vcpu_busy=vcpu_busy, seconds=seconds)
    if after.state != RUNNING:
        return Assessment(Activity.UNKNOWN, 'domain not running (%s)'
                          % after.state, vcpu_busy=vcpu_busy, seconds=seconds)
    disk = _growth(before.disks, after.disks, _disk_requests)
    sent = _growth(before.nics, after.nics, _sent_packets)
    if disk is None and sent is None:
        return Assessment(Activity.UNKNOWN, 'no disk or network counters '
                          'to compare', vcpu_busy=vcpu_busy, seconds=seconds)
    active = ((disk is not None and disk > floors.disk_requests)
              or (sent is not None and sent > floors.sent_packets))
    text = _evidence_text(disk, sent, seconds, vcpu_busy)
    if active:
        return Assessment(Activity.ACTIVE, text, disk, sent, vcpu_busy,
                          seconds)
    return Assessment(Activity.SILENT, 'no I/O above the noise floor: '
                      + text, disk, sent, vcpu_busy, seconds)


def _disk_requests(disk):
    return disk.read_requests + disk.write_requests + disk.flush_requests


def _sent_packets(nic):
    return nic.tx_packets


def _growth(before, after, measure):
    """Summed growth over the devices present in both snapshots.

    A device seen once (hot-plugged, unplugged) or whose counter went
    down (re-created) says nothing; None when no device compares.
    """
    earlier = {device.name: measure(device) for device in before}
    total = None
    for device in after:
        if device.name not in earlier:
            continue
        grown = measure(device) - earlier[device.name]
        if grown < 0:
            continue
        total = (total or 0) + grown
    return total


def _vcpu_busy(before, after, seconds):
    if (before.vcpu_time_ns is None or after.vcpu_time_ns is None
            or seconds <= 0 or after.vcpu_count < 1
            or after.vcpu_time_ns < before.vcpu_time_ns):
        return None
    busy = (after.vcpu_time_ns - before.vcpu_time_ns) / (
        seconds * 1e9 * after.vcpu_count)
    return min(busy, 1.0)


def _evidence_text(disk, sent, seconds, vcpu_busy):
    parts = []
    if disk is not None:
        parts.append('%d disk request%s' % (disk, '' if disk == 1 else 's'))
    if sent is not None:
        parts.append('%d packet%s sent' % (sent, '' if sent == 1 else 's'))
    text = '%s in %.0f s' % (', '.join(parts), seconds)
    if vcpu_busy is not None:
        text += ' (vCPUs %.0f%% busy)' % (vcpu_busy * 100)
    return text


class Judgement(typing.NamedTuple):
    assessment: Assessment
    # True: the guest is working; defer the notification.
    defer: bool
    # True the first time an incident is deferred: log it and count it,
    # once.
    newly_active: bool


class SilentPeriods:
    """The silent period of each domain whose agent misses pings.

    Kept in memory by the caller (the tracker), no I/O: after a daemon
    restart a period starts again at the next miss, and until it has two
    snapshots the verdict is UNKNOWN, so the guest is reported as without
    corroboration.

    The caller's part, for one domain:

    * :meth:`missed` on every counted miss, with that domain's counters
      (None when the stats call gave none): the first one opens the
      period;
    * :meth:`judge` when the health policy asks to notify, after
      :meth:`missed` for the same miss; ``defer`` means do not queue the
      notification now (the policy asks again on the next miss, which is
      judged over the time since this one, so a guest that stops working
      later is still reported);
    * :meth:`ended` when its agent answers again or it is re-armed or
      forgotten.
    """

    def __init__(self, enabled=True, floors=NoiseFloors()):
        self.enabled = enabled
        self.floors = floors
        # uuid -> DomainCounters at the start of the period being judged.
        self._start = {}
        # UUIDs already found active in their current incident.
        self._active = set()

    @classmethod
    def from_conf(cls, conf):
        return cls(conf.monitor.corroborate_with_io,
                   NoiseFloors.from_conf(conf))

    def missed(self, uuid, counters):
        if counters is not None and uuid not in self._start:
            self._start[uuid] = counters

    def judge(self, uuid, counters):
        if not self.enabled:
            return Judgement(Assessment(Activity.UNKNOWN,
                                        'I/O corroboration is off'),
                             False, False)
        assessment = assess(self._start.get(uuid), counters, self.floors)
        if assessment.activity is not Activity.ACTIVE:
            return Judgement(assessment, False, False)
        # Judge the next miss over the time since this one: work done
        # before now must not vouch for a guest that has died since.
        self._start[uuid] = counters
        newly_active = uuid not in self._active
        self._active.add(uuid)
        return Judgement(assessment, True, newly_active)

    def ended(self, uuid):
        self._start.pop(uuid, None)
        self._active.discard(uuid)

    def is_active(self, uuid):
        """True while ``uuid``'s current incident is deferred because the
        guest was found working."""
        return uuid in self._active

    def keep_only(self, uuids):
        """Drop the periods of domains not in ``uuids`` (gone from the
        host)."""
        uuids = set(uuids)
        for uuid in set(self._start) - uuids:
            del self._start[uuid]
        self._active &= uuids

    def __contains__(self, uuid):
        """True while a silent period is open for ``uuid``."""
        return uuid in self._start
