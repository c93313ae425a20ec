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
``MAX_CONCURRENT`` recoveries touch libvirt at a time (a host where many
guests fail at once is the breaker's case anyway).

Every libvirt call of a recovery is bounded (``recovery_deadlines``): the
console, the screenshot and the action each run on a native thread of
their own (``concurrency.NativeCall``, never the shared pool the listings
use, which a call that never returns would drain), and the recovery
waits for each at most its deadline and the whole step's. When one
expires, the notification is released at once with the result
``timed_out`` naming the call, the slot is freed, and the call is kept in
``stuck_calls`` until it returns: no other call is started on that domain
meanwhile, and a later failure of it is notified at once, saying so. The
native threads neither log nor touch anything green; this module logs
what they return.

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
import typing

from monitor import concurrency
from monitor.daemon import recovery_deadlines as deadlines_mod
from monitor.daemon import recovery_ladder
from monitor.daemon import stuck_calls as stuck_mod
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


class Late(typing.NamedTuple):
    """A call of a recovery that did not return in time."""

    step: str
    bound: float
    option: str


class RecoveryStep:

    def __init__(self, policy, history, evidence_store, outbox, breaker,
                 driver, host, console_lines=100,
                 start_call=concurrency.NativeCall, spawn=concurrency.spawn,
                 clock=time.time, delivery_wakeup=None,
                 sleep=concurrency.sleep, deadlines=None, metrics=None,
                 monotonic=time.monotonic, ladder=(), nmi_grace=60):
        """``host`` has the libvirt ``connection`` (monitor.virt.host);
        ``delivery_wakeup`` is the event shared with the delivery worker,
        set once a notification is released. ``start_call(func, *args)``
        starts a native call (``concurrency.NativeCall``); ``deadlines``:
        ``recovery_deadlines.Deadlines``; ``metrics`` counts the calls
        that timed out. ``ladder``: [recovery] ladder, the steps tried in
        turn instead of the one action (``recovery_ladder``)."""
        self.policy = policy
        self.history = history
        self.evidence_store = evidence_store
        self.outbox = outbox
        self.breaker = breaker
        self.driver = driver
        self.host = host
        self.console_lines = console_lines
        self._start_call = start_call
        self._spawn = spawn
        self.deadlines = deadlines or deadlines_mod.Deadlines()
        self.metrics = metrics
        self._monotonic = monotonic
        self.stuck = stuck_mod.StuckCalls(clock)
        # Notification id -> (notification, action, green thread) of each
        # recovery started and not over.
        self._started = {}
        # Notification id -> (domain name, UUID, monotonic time its slot
        # was taken) of each recovery holding a slot.
        self._holding = {}
        self._stopping = False
        self._clock = clock
        self._delivery_wakeup = delivery_wakeup
        self._sleep = sleep
        self._slots = concurrency.Semaphore(MAX_CONCURRENT)
        # UUIDs whose metadata action was said to be ignored.
        self._noted = set()
        self.ladder = recovery_ladder.Ladder(self, ladder, nmi_grace,
                                             sleep=sleep)

    @classmethod
    def from_conf(cls, conf, outbox, breaker, host, history, evidence_store,
                  delivery_wakeup=None, metrics=None):
        return cls(recovery.RecoveryPolicy.from_conf(conf), history,
                   evidence_store, outbox, breaker, conf.notifier.driver,
                   host, console_lines=conf.evidence.console_lines,
                   delivery_wakeup=delivery_wakeup,
                   deadlines=deadlines_mod.Deadlines.from_conf(conf),
                   metrics=metrics, ladder=conf.recovery.ladder or (),
                   nmi_grace=conf.recovery.nmi_grace)

    def action_for(self, uuid, name, override):
        """The effective action for a domain: its metadata's ``override``,
        else the configured one; ``none`` with the masakari driver."""
        action, note = recovery.effective_action(self.policy.action,
                                                 override, self.driver)
        if note and uuid not in self._noted:
            self._noted.add(uuid)
            LOG.warning('Domain %s (%s): %s', name, uuid, note)
        if recovery.ladder_of(self.policy.action, override, self.driver,
                              self.ladder.steps) == self.ladder.steps and \
                self.ladder.steps:
            return recovery.LADDER
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
        n = notification
        self._started[n.id] = (n, action, None)
        thread = self._spawn(self.run, n, misses, action, on_done)
        if n.id in self._started:  # not over already (a direct run)
            self._started[n.id] = (n, action, thread)

    def run(self, notification, misses, action, on_done):
        n = notification
        try:
            with self._slots:
                bound = self.deadlines.slot_bound
                if action == recovery.LADDER:
                    bound = self.ladder.bound() + deadlines_mod.SLOT_MARGIN
                self._holding[n.id] = (n.domain_name, n.instance_uuid,
                                       self._monotonic(), bound)
                try:
                    report, refs = self._recover(n, action)
                except Exception as exc:  # boundary: the notification must go
                    LOG.exception('Recovery of domain %s (%s) failed '
                                  'unexpectedly', n.domain_name,
                                  n.instance_uuid)
                    report, refs = recovery.RecoveryReport(
                        action, recovery.RESULT_FAILED,
                        'unexpected error: %s' % type(exc).__name__), []
                finally:
                    del self._holding[n.id]
            if self._stopping:
                return  # held: sent as interrupted at the next start
            failures = getattr(self.metrics, 'failures', None)
            if failures is not None:
                failures.recovery(report)
            details = recovery.notification_details(
                misses, report, refs, reason=(n.details or {}).get('reason'))
            # What the queue added (an application failure's probe) stays.
            for key, value in (n.details or {}).items():
                details.setdefault(key, value)
            if self._release(n, details):
                on_done(n.instance_uuid, report, self._clock())
        finally:
            self._started.pop(n.id, None)

    def _recover(self, n, action):
        uuid, name = n.instance_uuid, n.domain_name
        if self.breaker.tripped:
            LOG.warning('Domain %s (%s): no %s while the mass-failure '
                        'breaker is tripped', name, uuid, action)
            return recovery.RecoveryReport(
                action, recovery.RESULT_BREAKER_OPEN,
                'mass-failure breaker tripped: the host, not the guest, is '
                'suspected'), []
        stuck = self.stuck.get(uuid)
        if stuck is not None:
            LOG.error('Domain %s (%s) failed again and is not recovered: '
                      'the %s of an earlier recovery is still stuck in '
                      'libvirt after %.0f s', name, uuid, stuck.step,
                      stuck.call.running_for)
            return recovery.RecoveryReport(
                action, recovery.RESULT_TIMED_OUT,
                'not attempted: the %s started %.0f s ago by an earlier '
                'recovery of this domain is still stuck in libvirt'
                % (stuck.step, stuck.call.running_for)), []
        now = self._clock()
        decision = self.policy.decide(self.history.get(uuid), now,
                                      override=action)
        if decision.budget_exhausted:
            LOG.error('ALARM: domain %s (%s) failed again and is not '
                      'recovered: %s', name, uuid, decision.reason)
            refs, _result, late = self._capture(uuid, name, None)
            if late is not None:
                return self._timed_out(decision.wanted, late,
                                       'the budget allowed no action'), refs
            return recovery.report(decision), refs
        try:
            self.history.put(uuid, decision.history, now)
        except OSError as exc:
            LOG.error('Cannot write the recovery history %s: %s; the '
                      'budget of domain %s (%s) is kept in memory only',
                      self.history.path, exc, name, uuid)
        if decision.action == recovery.LADDER:
            return self.ladder.climb(uuid, name, decision)
        refs, result, late = self._capture(uuid, name, decision.action)
        if late is not None:
            return self._timed_out(decision.action, late), refs
        if result.ok:
            LOG.warning('Domain %s (%s) recovered: %s', name, uuid,
                        decision.reason)
        else:
            LOG.error('Domain %s (%s) could not be recovered: %s', name,
                      uuid, result.detail)
        return recovery.report(decision, result.ok, result.detail), refs

    def _capture(self, uuid, name, action):
        """Evidence, then the action (None: evidence only), each call
        bounded. Returns (refs, ActionResult or None, Late or None)."""
        deadline = self._monotonic() + self.deadlines.step
        console, late = self._bounded(
            uuid, name, deadlines_mod.CONSOLE, deadline,
            libvirt_actions.console_evidence, self.host.connection, uuid,
            self.evidence_store, self.console_lines)
        if late is not None:
            return [], None, late
        found, refs, problems = console
        if found.dom is None:
            return [], libvirt_actions.ActionResult(False, found.problem), \
                None
        self._log_evidence(uuid, name, refs, problems)
        if found.graphics:
            screen, late = self._bounded(
                uuid, name, deadlines_mod.SCREENSHOT, deadline,
                libvirt_actions.capture_screenshot, found.dom,
                self.evidence_store)
            if late is not None:
                return refs, None, late
            self._log_evidence(uuid, name, *screen)
            refs = refs + screen[0]
        if action is None:
            return refs, None, None
        result, late = self._bounded(uuid, name, deadlines_mod.ACTION,
                                     deadline, libvirt_actions.act,
                                     found.dom, action)
        return refs, result, late

    def _bounded(self, uuid, name, step, deadline, func, *args):
        """Run one call on a native thread of its own and wait at most its
        bound and what is left of the step's. Returns (its value, None),
        or (None, Late) when it did not return in time: it is then kept
        as stuck."""
        own = self.deadlines.of(step)
        left = deadline - self._monotonic()
        if left <= 0:
            # The earlier calls used the whole step: none is started.
            return None, Late(step, self.deadlines.step,
                              deadlines_mod.STEP_OPTION)
        call = self._start_call(func, *args)
        if call.wait(min(own, left)):
            try:
                return call.result(), None
            finally:
                call.close()
        self.stuck.add(uuid, name, step, call)
        if self.metrics is not None:
            self.metrics.recovery_timed_out(step)
        bound, option = (own, deadlines_mod.OPTION_NAMES[step])
        if left < own:
            bound, option = (self.deadlines.step, deadlines_mod.STEP_OPTION)
        LOG.error('Domain %s (%s): the %s did not return within %.0f s '
                  '(%s); giving up on it, it stays stuck in libvirt and '
                  'nothing more is done to this domain until it returns',
                  name, uuid, step, bound, option)
        return None, Late(step, bound, option)

    def _timed_out(self, action, late, tail=None):
        """The report of a recovery that gave up on its ``late`` call."""
        if late.step == deadlines_mod.ACTION:
            what = 'the %s' % action
            tail = tail or 'whether it reached the guest is unknown'
        else:
            what = 'the %s capture' % late.step
            tail = tail or 'the %s was not attempted' % action
        return recovery.RecoveryReport(
            action, recovery.RESULT_TIMED_OUT,
            '%s: %s did not return within %.0f s (%s) and is still stuck in '
            'libvirt; %s' % (late.step, what, late.bound, late.option, tail))

    def _log_evidence(self, uuid, name, refs, problems):
        for problem in problems:
            LOG.info('Domain %s (%s): evidence: %s', name, uuid, problem)
        for ref in refs:
            LOG.info('Domain %s (%s): evidence kept: %s (%d bytes)', name,
                     uuid, ref.path, ref.size)

    # -- health and shutdown ---------------------------------------------------

    def overdue(self):
        """(name, UUID, seconds) of each recovery that has held its slot
        past the whole step's bound plus a margin: the bounds failed."""
        return [late[:3] for late in self._overdue()]

    def _overdue(self):
        now = self._monotonic()
        return [(name, uuid, now - since, bound)
                for name, uuid, since, bound in self._holding.values()
                if now - since > bound]

    def overdue_reason(self):
        """Why the recoveries are not live, or None when they are."""
        late = self._overdue()
        if not late:
            return None
        name, uuid, held, bound = max(late, key=lambda item: item[2])
        return ('the recovery of domain %s (%s) has held its slot for %.0f s,'
                ' past its bound of %.0f s' % (name, uuid, held, bound))

    def stop(self):
        """The daemon stops: abandon the recoveries under way. Their
        notifications stay held in the outbox, and the next start sends
        them as interrupted; their native calls are left to end with the
        process."""
        self._stopping = True
        for n, action, thread in list(self._started.values()):
            LOG.warning('Notification %s for domain %s (%s) stays held: its '
                        '%s was under way when the monitor stopped; the next '
                        'start sends it as interrupted', n.id, n.domain_name,
                        n.instance_uuid, action)
            if thread is not None:
                thread.kill()
        self._started.clear()

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
