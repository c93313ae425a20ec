"""Runs the application probes of live guests and reports an application
failure as an incident of its own.

The ping decides whether a guest is alive; only a guest whose record is
``healthy`` (its agent answers, not paused, not in maintenance) is
probed. Each probe runs every ``period_seconds`` on a native thread of its
own (``concurrency.NativeCall``), bounded by a deadline, and at most
``[probes] max_concurrent`` run at once: probes have their own slots and
threads and never take the ping lanes' (``lanes``). One probe call per
domain at a time: libvirt serialises a domain's agent commands, so a
second one would only queue behind the first, and ahead of the next ping.

A probe that fails ``failure_threshold`` times in a row is an application
failure: one notification, its details saying ``incident``:
``application`` and naming the probe, with the recovery action of its own
(``[probes] action`` or the domain's ``application_action``; none by
default), counted in the domain's recovery budget. With the HA engine
([notifier] driver = masakari) nothing is sent unless
``[probes] notify_masakari`` is set, since the engine would recover the
VM. The probe passes again after ``success_threshold`` runs in a row.

An agent that refuses the commands a probe needs makes it unavailable:
said once per domain and probe, counted, never a failure.

Probe standings live in memory: a restart starts every probe afresh
(a command still running in the guest is then not known; the next run
starts another).
"""

from __future__ import annotations

import dataclasses
import logging
import time

from oslo_config import cfg

from monitor import concurrency
from monitor.errors import ConfigError
from monitor.health import probes
from monitor.health import recovery_policy as recovery
from monitor.health import states
from monitor.virt import guest_probes

LOG = logging.getLogger(__name__)

GROUP = 'probes'

OPTS = [
    cfg.MultiStrOpt(
        'probe',
        default=[],
        help="""
An application probe run in every monitored guest that declares none of
its own in its metadata; repeat the option for more (at most 8). Each is
comma-separated key=value pairs: name (required), kind (exec or
heartbeat), for exec path (absolute, in the guest) and args (split on
spaces), for heartbeat file (absolute, in the guest) and max_age
(seconds, default 30), and period_seconds (default 10), timeout_seconds
(default 1), failure_threshold (default 3), success_threshold (default
1). Example: name=db, kind=exec, path=/usr/local/bin/check-db,
args=--quick. Default: none (no probes).

Related options:

* [probes] action, [probes] notify_masakari
"""),
    cfg.StrOpt(
        'action',
        default=recovery.NONE,
        choices=[
            (recovery.NONE, 'only notify'),
            (recovery.RESET, 'hard reset of the guest'),
            (recovery.RESTART, 'destroy, then start the domain again'),
        ],
        help="""
What the monitor itself does to a guest whose application probe failed
(its agent still answers), within the domain's [recovery] max_actions
budget. A domain's metadata may say otherwise (application_action).
Only without an HA engine: refused with [notifier] driver = masakari.
Default none.
"""),
    cfg.BoolOpt(
        'notify_masakari',
        default=False,
        help="""
With [notifier] driver = masakari, send an application failure to the HA
engine as a guest agent error, so that the engine recovers the VM. Off by
default: an application failure is then only logged and counted, since
the engine would restart a VM whose guest still runs.
"""),
    cfg.IntOpt(
        'max_concurrent',
        default=2, min=1, max=64,
        help="""
Most probe calls in flight at once, each on a native thread of its own and
a libvirt call of the monitor's connection (libvirtd serves 5 at once per
connection by default: keep room for the pings). From 1 to 64. Default 2.
"""),
]

# Seconds between two looks at which probes are due.
TICK = 1.0
# Per agent call of a run: libvirt's 5 s guest-sync floor after an agent
# timed out, and a second to spare.
_CALL_SLACK = 6.0
# Agent calls of the longest run of each kind, each of which may wait
# its timeout and the floor: an exec run asks about a command still in
# flight, starts one (guest-exec), then asks its status until the timeout;
# a heartbeat run opens the file, reads it, asks the guest's time and
# closes the file.
_CALLS = {probes.EXEC: 3, probes.HEARTBEAT: 4}


def list_opts():
    return [(GROUP, OPTS)]


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


def configured_probes(conf):
    """The [probes] probe values as ProbeSpec; raises ConfigError."""
    specs = []
    for text in conf[GROUP].probe:
        spec, error = probes.parse_config_probe(text)
        if error:
            raise ConfigError(GROUP, 'probe', error)
        specs.append(spec)
    error = probes.unique(specs)
    if error:
        raise ConfigError(GROUP, 'probe', error)
    return tuple(specs)


def check_conf(conf):
    """Refuse invalid probes and an action with the HA engine at start."""
    configured_probes(conf)
    if conf.notifier.driver == 'masakari' and \
            conf[GROUP].action != recovery.NONE:
        raise ConfigError(GROUP, 'action', "'%s' cannot be used with "
                          "[notifier] driver = masakari: the HA engine "
                          "recovers the VM itself" % conf[GROUP].action)


def call_bound(spec):
    """Seconds a run of ``spec`` may take before it is given up on."""
    return _CALLS[spec.kind] * (spec.timeout_seconds + _CALL_SLACK)


class ProbeRunner:

    def __init__(self, tracker, host, configured=(), action=recovery.NONE,
                 driver='log', notify_engine=False, max_concurrent=2,
                 clock=time.time, monotonic=time.monotonic,
                 start_call=concurrency.NativeCall, spawn=concurrency.spawn_n,
                 metrics=None):
        """``tracker``: the daemon's DomainTracker (records, settings,
        maintenance, notification queue); ``host`` has the libvirt
        ``connection``."""
        self.tracker = tracker
        self.host = host
        self.configured = tuple(configured)
        self.action = action
        self.driver = driver
        self.notify_engine = notify_engine
        self._clock = clock
        self._monotonic = monotonic
        self._start_call = start_call
        self._spawn = spawn
        self.metrics = metrics
        # Told when a failed probe passes again: the end of an
        # application failure, for the drivers told of ends.
        self.on_passed_again = None
        self._slots = concurrency.Semaphore(max_concurrent)
        # (uuid, probe name) -> probes.ProbeState
        self.states = {}
        # (uuid, probe name) -> monotonic time the next run is due
        self._due = {}
        # uuid -> run of the guest the standings belong to
        self._runs = {}
        # UUIDs with a probe call under way (one per domain).
        self._busy = set()
        # uuid -> (probe name, NativeCall) of a call given up on.
        self._stuck = {}

    @classmethod
    def from_conf(cls, conf, tracker, host, metrics=None):
        group = conf[GROUP]
        return cls(tracker, host, configured_probes(conf),
                   action=group.action, driver=conf.notifier.driver,
                   notify_engine=group.notify_masakari,
                   max_concurrent=group.max_concurrent, metrics=metrics)

    @property
    def enabled(self):
        """False when no probe is configured: the loop then only looks at
        domains that declare their own."""
        return bool(self.configured)

    def run(self, stop_event):
        while not stop_event.is_set():
            try:
                self.step()
            except Exception:  # loop boundary: log and keep going
                LOG.exception('Unexpected error running application probes')
            stop_event.wait(TICK)

    def _candidates(self):
        """The records of the domains that may have probes: all of them
        when probes are configured, else those declaring their own (none:
        the records are not even read)."""
        store = self.tracker.store
        if self.configured:
            return store.all()
        records = (store.get(uuid)
                   for uuid in self.tracker.settings.with_own_probes())
        return [record for record in records if record is not None]

    def step(self):
        """Start every probe that is due on a live guest."""
        now = self._monotonic()
        live = set()
        for record in self._candidates():
            uuid = record.uuid
            specs = self.tracker.settings.probes_of(uuid, self.configured)
            if not specs:
                continue
            live.add(uuid)
            self._new_run(record)
            if not self._alive(record) or uuid in self._busy or \
                    not self._unstuck(uuid, record.name):
                continue
            for spec in specs:
                key = (uuid, spec.name)
                if self._due.get(key, now) <= now:
                    self._due[key] = now + spec.period_seconds
                    self._busy.add(uuid)
                    self._spawn(self._probe, record.uuid, record.name, spec)
                    break  # one call per domain at a time
        self._forget(live)

    def _alive(self, record):
        return (record.state == states.HEALTHY and not record.paused
                and not self.tracker.maintenance.covers(record.uuid))

    def _new_run(self, record):
        """Standings belong to one run of the guest: a reboot or reset
        (re-armed: a new ``discovery_since``) starts them afresh."""
        run = record.discovery_since
        if self._runs.get(record.uuid, run) != run:
            for key in [key for key in self.states if key[0] == record.uuid]:
                del self.states[key]
        self._runs[record.uuid] = run

    def _forget(self, live):
        for mapping in (self.states, self._due):
            for key in [key for key in mapping if key[0] not in live]:
                del mapping[key]
        for uuid in set(self._runs) - live:
            del self._runs[uuid]

    def _unstuck(self, uuid, name):
        stuck = self._stuck.get(uuid)
        if stuck is None:
            return True
        if not stuck[1].done:
            return False
        del self._stuck[uuid]
        stuck[1].close()
        LOG.info('Domain %s (%s): the call of probe %s given up on has '
                 'returned; probing again', name, uuid, stuck[0])
        return True

    def _probe(self, uuid, name, spec):
        try:
            with self._slots:
                key = (uuid, spec.name)
                state = self.states.get(key, probes.ProbeState())
                call = self._start_call(guest_probes.run,
                                        self.host.connection, uuid, spec,
                                        state.in_flight)
                bound = call_bound(spec)
                if not call.wait(bound):
                    self._stuck[uuid] = (spec.name, call)
                    LOG.error('Domain %s (%s): probe %s did not return within '
                              '%.0f s; no probe of this domain runs until it '
                              'does', name, uuid, spec.name, bound)
                    return
                try:
                    result = call.result()
                finally:
                    call.close()
            self.apply(uuid, spec, result)
        finally:
            self._busy.discard(uuid)

    # -- results -----------------------------------------------------------

    def apply(self, uuid, spec, result, now=None):
        """Judge one result and act on what changed."""
        now = self._clock() if now is None else now
        record = self.tracker.store.get(uuid)
        if record is None or not self._alive(record):
            return  # gone, or no longer alive while the probe ran
        key = (uuid, spec.name)
        before = self.states.get(key, probes.ProbeState())
        state, change = probes.judge(spec, before, result)
        self.states[key] = state
        self._count(result)
        if result.outcome is probes.Outcome.FAILED and \
                change is not probes.Change.FAILED:
            LOG.debug('Domain %s (%s): probe %s failed (%d of %d): %s',
                      record.name, uuid, spec.name, state.failures,
                      spec.failure_threshold, result.detail)
        if change is probes.Change.FAILED:
            if not self._failed(record, spec, state, now):
                # Not queued (the outbox is full or locked): still
                # failing, yet not FAILING, so the next failed run asks
                # again, as the next missed ping does for a silent guest.
                self.states[key] = dataclasses.replace(
                    state, status=probes.UNKNOWN_STATUS)
        elif change is probes.Change.RECOVERED:
            LOG.info('Domain %s (%s): application probe %s passes again '
                     '(%s)', record.name, uuid, spec.name, result.detail)
            if self.on_passed_again is not None:
                self.on_passed_again(uuid, now)
        elif change is probes.Change.UNAVAILABLE:
            LOG.warning('Domain %s (%s): application probe %s is '
                        'unavailable, not a failure: %s', record.name, uuid,
                        spec.name, result.detail)
        elif change is probes.Change.AVAILABLE:
            LOG.info('Domain %s (%s): application probe %s is available '
                     'again', record.name, uuid, spec.name)

    def _count(self, result):
        failures = getattr(self.metrics, 'failures', None)
        if failures is not None:
            failures.probe_run(result.outcome.value)

    def _failed(self, record, spec, state, now):
        """Report an application failure; False when the notification
        queue could not take it."""
        reason = probes.failure_reason(spec, state)
        if self.driver == 'masakari' and not self.notify_engine:
            # Counted here: the queue, which counts the others, is not
            # asked.
            failures = getattr(self.metrics, 'failures', None)
            if failures is not None:
                failures.guest_failure(probes.FAILURE_REASON)
            LOG.warning('Domain %s (%s): application failure, not sent to '
                        'the HA engine ([probes] notify_masakari is off): %s',
                        record.name, record.uuid, reason)
            return True
        shape = (probes.ENGINE_SHAPE if self.driver == 'masakari'
                 else probes.APPLICATION)
        action = (self.tracker.settings.application_action_of(record.uuid)
                  or self.action)
        return self.tracker.notifications.queue(
            record, reason, now, action, self.tracker.recovery_ended, shape,
            extra_details=probes.failure_details(spec, state)) is not None
