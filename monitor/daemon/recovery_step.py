"""The recovery step of a plain libvirt host: evidence, then the action,
then the notification's details.

The tracker's ``notification_queue`` calls it when it queues a
notification for a failure whose effective action ([recovery] action, or
the domain's own metadata) is reset or restart. The notification is
already in the outbox, *held*: it is pending, so no second one is queued
for the domain, but it is not sent until this step has filled in what
happened. So a crash at any point loses nothing: at the next start
:func:`release_interrupted` sends every held notification with the result
``interrupted``.

One recovery runs in a green thread of its own, so the sweep that found
the failure goes on at once: a screenshot of a wedged QEMU or a slow
destroy may take seconds, and making the round wait for it would delay the
pings (and the failures) of every other guest. At most
``MAX_CONCURRENT`` recoveries touch libvirt at a time: they use the
native thread pool of ``concurrency.run_native``, which the daemon's
libvirt listings share, and a host where many guests fail at once is the
breaker's case anyway. Each libvirt call runs in a native thread that
neither logs nor touches anything green; this module logs what they
return.

Order of one recovery: the mass-failure breaker (tripped: nothing is
touched), the budget (decided and written down before the guest is
touched: a reset that fails still counts), evidence (console tail,
screenshot), the action, then the release of the notification with its
details. The tracker is told when it is over and re-arms a recovered
domain to discovery.
"""

from __future__ import annotations

import logging
import time

from monitor import concurrency
from monitor.health import recovery_policy as recovery
from monitor.notify import outbox as outbox_mod
from monitor.virt import guest_actions as libvirt_actions

LOG = logging.getLogger(__name__)

# Recoveries carrying out libvirt calls at once.
MAX_CONCURRENT = 2

# Wait between attempts to release a notification while another process
# holds the outbox's lock (each attempt already waits up to 30 s).
RELEASE_RETRY = 5.0

INTERRUPTED_DETAIL = ('the monitor stopped while this recovery was under '
                      'way; whether the action reached the guest is '
                      'unknown')


class RecoveryStep:

    def __init__(self, policy, history, evidence_store, outbox, breaker,
                 driver, host, console_lines=100,
                 execute=concurrency.run_native, spawn=concurrency.spawn_n,
                 clock=time.time, delivery_wakeup=None,
                 sleep=concurrency.sleep):
        """``host`` has the libvirt ``connection`` (monitor.virt.host);
        ``delivery_wakeup`` is the event shared with the delivery worker,
        set once a notification is released."""
        self.policy = policy
        self.history = history
        self.evidence_store = evidence_store
        self.outbox = outbox
        self.breaker = breaker
        self.driver = driver
        self.host = host
        self.console_lines = console_lines
        self._execute = execute
        self._spawn = spawn
        self._clock = clock
        self._delivery_wakeup = delivery_wakeup
        self._sleep = sleep
        self._slots = concurrency.Semaphore(MAX_CONCURRENT)
        # UUIDs whose metadata action was said to be ignored.
        self._noted = set()

    @classmethod
    def from_conf(cls, conf, outbox, breaker, host, history, evidence_store,
                  delivery_wakeup=None):
        return cls(recovery.RecoveryPolicy.from_conf(conf), history,
                   evidence_store, outbox, breaker, conf.notifier.driver,
                   host, console_lines=conf.evidence.console_lines,
                   delivery_wakeup=delivery_wakeup)

    def action_for(self, uuid, name, override):
        """The effective action for a domain: its metadata's ``override``,
        else the configured one; ``none`` with the masakari driver."""
        action, note = recovery.effective_action(self.policy.action,
                                                 override, self.driver)
        if note and uuid not in self._noted:
            self._noted.add(uuid)
            LOG.warning('Domain %s (%s): %s', name, uuid, note)
        return action

    def initial_details(self, misses, action, reason=None):
        """The details a held notification is stored with."""
        return recovery.notification_details(
            misses, recovery.RecoveryReport(action,
                                            recovery.RESULT_IN_PROGRESS),
            reason=reason)

    def start(self, notification, misses, action, on_done):
        """Recover in a green thread of its own; ``on_done(uuid, report,
        now)`` is called once the notification is released."""
        self._spawn(self.run, notification, misses, action, on_done)

    def run(self, notification, misses, action, on_done):
        n = notification
        with self._slots:
            try:
                report, refs = self._recover(n, action)
            except Exception as exc:  # boundary: the notification must go
                LOG.exception('Recovery of domain %s (%s) failed '
                              'unexpectedly', n.domain_name, n.instance_uuid)
                report, refs = recovery.RecoveryReport(
                    action, recovery.RESULT_FAILED,
                    'unexpected error: %s' % type(exc).__name__), []
        details = recovery.notification_details(
            misses, report, refs, reason=(n.details or {}).get('reason'))
        if self._release(n, details):
            on_done(n.instance_uuid, report, self._clock())

    def _recover(self, n, action):
        uuid, name = n.instance_uuid, n.domain_name
        if self.breaker.tripped:
            LOG.warning('Domain %s (%s): no %s while the mass-failure '
                        'breaker is tripped', name, uuid, action)
            return recovery.RecoveryReport(
                action, recovery.RESULT_BREAKER_OPEN,
                'mass-failure breaker tripped: the host, not the guest, is '
                'suspected'), []
        now = self._clock()
        decision = self.policy.decide(self.history.get(uuid), now,
                                      override=action)
        if decision.budget_exhausted:
            LOG.error('ALARM: domain %s (%s) failed again and is not '
                      'recovered: %s', name, uuid, decision.reason)
            refs = self._capture(uuid, name, None)[0]
            return recovery.report(decision), refs
        try:
            self.history.put(uuid, decision.history, now)
        except OSError as exc:
            LOG.error('Cannot write the recovery history %s: %s; the '
                      'budget of domain %s (%s) is kept in memory only',
                      self.history.path, exc, name, uuid)
        refs, result = self._capture(uuid, name, decision.action)
        if result.ok:
            LOG.warning('Domain %s (%s) recovered: %s', name, uuid,
                        decision.reason)
        else:
            LOG.error('Domain %s (%s) could not be recovered: %s', name,
                      uuid, result.detail)
        return recovery.report(decision, result.ok, result.detail), refs

    def _capture(self, uuid, name, action):
        refs, problems, result = self._execute(
            libvirt_actions.capture_and_act, self.host.connection, uuid,
            action, self.evidence_store, self.console_lines)
        for problem in problems:
            LOG.info('Domain %s (%s): evidence: %s', name, uuid, problem)
        for ref in refs:
            LOG.info('Domain %s (%s): evidence kept: %s (%d bytes)', name,
                     uuid, ref.path, ref.size)
        return refs, result

    def _release(self, n, details):
        while True:
            try:
                self.outbox.release(n.id, details, self._clock())
                break
            except outbox_mod.OutboxBusy as exc:
                LOG.warning('Notification %s for domain %s (%s) not '
                            'released yet: %s', n.id, n.domain_name,
                            n.instance_uuid, exc)
                self._sleep(RELEASE_RETRY)
            except outbox_mod.OutboxError as exc:
                # Removed by an operator meanwhile: nothing left to send.
                LOG.error('Notification %s for domain %s (%s) cannot be '
                          'released: %s', n.id, n.domain_name,
                          n.instance_uuid, exc)
                return False
        if self._delivery_wakeup is not None:
            self._delivery_wakeup.set()
        return True


def release_interrupted(outbox, now):
    """Release every notification a stopped daemon left held, saying the
    recovery was interrupted. Returns how many."""
    released = 0
    for entry in outbox.held():
        n = entry.notification
        details = dict(n.details or {})
        wanted = (details.get('recovery') or {}).get('action', 'unknown')
        details['recovery'] = recovery.RecoveryReport(
            wanted, recovery.RESULT_INTERRUPTED,
            INTERRUPTED_DETAIL).to_dict()
        details.setdefault('evidence', [])
        outbox.release(n.id, details, now)
        LOG.warning('Notification %s for domain %s (%s) was held while its '
                    '%s was under way when the monitor stopped; sending it '
                    'as interrupted', n.id, n.domain_name, n.instance_uuid,
                    wanted)
        released += 1
    return released
