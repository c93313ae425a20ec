"""libvirt's bulk domain stats: many domains' counters in one call.

The edge for :mod:`monitor.health.guest_activity`. One
``virConnectGetAllDomainStats`` (every active domain) or
``virDomainListGetStats`` (the domains given) returns state, vCPU, block and
interface counters, parsed here into ``guest_activity.DomainCounters``
keyed by UUID.

Runs in a native thread: nothing here logs or touches green objects.
Problems with one domain (odd values, a domain that vanished) are returned
in :attr:`Collected.errors` for the caller to log and leave the other
domains' counters intact; only a lost connection raises.

``NOWAIT``: libvirt skips the counters that need a job on a domain
another job holds (migration, snapshot) instead of waiting for it, so a
busy domain cannot stall the caller. Those counters are then missing, which
``guest_activity`` treats as nothing to compare.

NOWAIT does not bound the call itself: block counters come from QEMU's
monitor, and libvirt waits for a QEMU process that does not answer (stuck
on lost storage) without a timeout, holding up the whole list. The caller
therefore waits for :func:`collect` at most a bounded time (the ping
timeout is enough: it is one round trip per domain), keeps at most one call
in flight, and treats a late answer as no counters, which reports the
guest as without corroboration.
"""

import time
import typing

from monitor.errors import StatsUnavailable
from monitor.health import guest_activity
from monitor.virt.libvirt_errors import error_text
from monitor.virt.libvirt_errors import is_disconnect

try:
    import libvirt
except ImportError:  # pragma: no cover - hosts without the binding
    libvirt = None


class Collected(typing.NamedTuple):
    # UUID -> guest_activity.DomainCounters.
    counters: typing.Dict[str, guest_activity.DomainCounters]
    # UUID -> what went wrong for that domain alone.
    errors: typing.Dict[str, str]


def _stats_groups():
    return (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_VCPU
            | libvirt.VIR_DOMAIN_STATS_INTERFACE
            | libvirt.VIR_DOMAIN_STATS_BLOCK)


def collect(conn, domains=None, clock=time.monotonic):
    """Counters of ``domains`` (virDomain objects), or of every active
    domain when None, in one libvirt call.

    A domain that vanished in between is simply absent from the result.
    Should libvirt refuse the call for the list (one domain it cannot
    query), each domain is asked on its own so the others still get their
    counters.

    :raises StatsUnavailable: the connection is lost (or, for every
        active domain, libvirt refused the call).
    """
    nowait = libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT
    if domains is None:
        try:
            records = conn.getAllDomainStats(
                _stats_groups(),
                libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE | nowait)
        except libvirt.libvirtError as exc:
            raise StatsUnavailable(error_text(exc)) from None
        return _parse_all(records, clock())
    domains = list(domains)
    if not domains:
        return Collected({}, {})
    try:
        records = conn.domainListGetStats(domains, _stats_groups(), nowait)
    except libvirt.libvirtError as exc:
        if is_disconnect(exc):
            raise StatsUnavailable(error_text(exc)) from None
        return _one_by_one(conn, domains, clock)
    return _parse_all(records, clock())


def _one_by_one(conn, domains, clock):
    counters = {}
    errors = {}
    for dom in domains:
        try:
            records = conn.domainListGetStats(
                [dom], _stats_groups(),
                libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT)
        except libvirt.libvirtError as exc:
            if is_disconnect(exc):
                raise StatsUnavailable(error_text(exc)) from None
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                continue  # gone since it was listed
            errors[_uuid_or_unknown(dom)] = error_text(exc)
            continue
        found = _parse_all(records, clock())
        counters.update(found.counters)
        errors.update(found.errors)
    return Collected(counters, errors)


def _parse_all(records, at):
    counters = {}
    errors = {}
    for dom, stats in records:
        try:
            uuid = dom.UUIDString()
            name = dom.name()
        except libvirt.libvirtError as exc:
            errors[_uuid_or_unknown(dom)] = error_text(exc)
            continue
        try:
            counters[uuid] = parse(uuid, name, stats, at)
        except (AttributeError, TypeError, ValueError) as exc:
            errors[uuid] = 'unreadable domain stats: %s' % exc
    return Collected(counters, errors)


def _uuid_or_unknown(dom):
    try:
        return dom.UUIDString()
    except libvirt.libvirtError:
        return '(unknown)'


def _state_names():
    return {
        libvirt.VIR_DOMAIN_RUNNING: guest_activity.RUNNING,
        libvirt.VIR_DOMAIN_CRASHED: guest_activity.CRASHED,
        libvirt.VIR_DOMAIN_PAUSED: guest_activity.PAUSED,
        libvirt.VIR_DOMAIN_PMSUSPENDED: guest_activity.PAUSED,
    }


def parse(uuid, name, stats, at):
    """One domain's typed-parameter dict as ``DomainCounters``.

    Devices whose counters libvirt left out are skipped.

    :raises ValueError: a counter that is not a number.
    """
    state = _state_names().get(_int(stats, 'state.state'),
                               guest_activity.OTHER)
    vcpu_times = []
    for index in range(_int(stats, 'vcpu.maximum') or 0):
        value = _int(stats, 'vcpu.%d.time' % index)
        if value is not None:
            vcpu_times.append(value)
    disks = []
    for index in range(_int(stats, 'block.count') or 0):
        prefix = 'block.%d.' % index
        values = [_int(stats, prefix + key) for key in
                  ('rd.reqs', 'rd.bytes', 'wr.reqs', 'wr.bytes', 'fl.reqs')]
        if None in values:
            continue
        disks.append(guest_activity.DiskCounters(
            str(stats.get(prefix + 'name', index)), *values))
    nics = []
    for index in range(_int(stats, 'net.count') or 0):
        prefix = 'net.%d.' % index
        values = [_int(stats, prefix + key) for key in
                  ('rx.bytes', 'rx.pkts', 'tx.bytes', 'tx.pkts')]
        if None in values:
            continue
        nics.append(guest_activity.NicCounters(
            str(stats.get(prefix + 'name', index)), *values))
    return guest_activity.DomainCounters(
        uuid=uuid, name=name, at=at, state=state,
        vcpu_time_ns=sum(vcpu_times) if vcpu_times else None,
        vcpu_count=len(vcpu_times), disks=tuple(disks), nics=tuple(nics))


def _int(stats, key):
    value = stats.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError('%s is %r, not a number' % (key, value))
    return value


