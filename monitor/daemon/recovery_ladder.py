"""A recovery ladder: steps tried in turn on a failed guest until one
brings it back ([recovery] ladder, e.g. nmi, reset, restart).

The recovery step (``recovery_step``) decides the budget once for the
whole ladder and captures the evidence first; the ladder then climbs:

- *nmi* injects an NMI and waits up to ``nmi_grace`` seconds for the
  guest's agent to answer again, asking every ``POLL`` seconds. A guest
  with a crash kernel (or ``unknown_nmi_panic``) panics, writes its vmcore
  and reboots on its own: the dump that explains its death is kept. The
  console tail is captured again when the guest did not come back, so
  what the NMI printed is kept too.
- *reset* and *restart* are done when libvirt carried them out, as a
  one-step recovery is.

Each step is recorded as ``{action, result, at, detail}`` in the
notification's recovery report. When the last step fails, one alarm line
is logged and the result is ``failed``: the domain is not re-armed, so
nothing more is tried until its guest answers again.

Every libvirt call is bounded by the recovery step's ``_bounded`` (a
native thread of its own, its call's bound and what is left of the
ladder's). The whole ladder may take ``bound()`` seconds: the recovery
step's bound per step plus the grace of each nmi step.
"""

from __future__ import annotations

import logging

from monitor import concurrency
from monitor.daemon import recovery_deadlines as deadlines_mod
from monitor.health import recovery_policy as recovery
from monitor.notify import notification as notification_mod
from monitor.virt import guest_actions as libvirt_actions
from monitor.virt import guest_nmi

LOG = logging.getLogger(__name__)

# Seconds between two looks at a guest after its NMI.
POLL = 2.0
# Agent timeout of one look (libvirt's whole seconds).
_LOOK_TIMEOUT = 1


class Ladder:

    def __init__(self, step, steps, nmi_grace=60, sleep=concurrency.sleep,
                 clock=None):
        """``step``: the RecoveryStep whose bounded calls, evidence store
        and clocks the ladder uses; ``steps``: [recovery] ladder."""
        self.step = step
        self.steps = tuple(steps)
        self.nmi_grace = nmi_grace
        self._sleep = sleep
        self._clock = clock or step._clock

    def bound(self):
        """Seconds the whole ladder may take once it has its turn."""
        return (self.step.deadlines.step * max(1, len(self.steps))
                + self.nmi_grace * self.steps.count(recovery.NMI))

    def climb(self, uuid, name, decision):
        """Evidence, then each step until one works. Returns
        (RecoveryReport with its steps, [EvidenceRef])."""
        step = self.step
        deadline = step._monotonic() + self.bound()
        refs, result, late = step._capture(uuid, name, None)
        if late is not None:
            return step._timed_out(recovery.LADDER, late), refs
        if result is not None and not result.ok:
            return recovery.RecoveryReport(self.steps[0], recovery.RESULT_FAILED,
                                           result.detail), refs
        found, late = step._bounded(uuid, name, deadlines_mod.CONSOLE,
                                    deadline, libvirt_actions.find,
                                    step.host.connection, uuid)
        if late is not None:
            return step._timed_out(recovery.LADDER, late), refs
        if found.dom is None:
            return recovery.RecoveryReport(self.steps[0], recovery.RESULT_FAILED,
                                           found.problem), refs
        done = []
        for action in self.steps:
            at = self._clock()
            if action == recovery.NMI:
                ok, detail, late, more = self._nmi(uuid, name, found.dom,
                                                   deadline)
                refs = refs + more
            else:
                result, late = step._bounded(
                    uuid, name, deadlines_mod.ACTION, deadline,
                    libvirt_actions.act, found.dom, action)
                ok, detail = (None, None) if late else (result.ok,
                                                        result.detail)
            if late is not None:
                report = step._timed_out(action, late)
                done.append(_step(action, report.result, at, report.detail))
                return _report(action, report.result, report.detail,
                               done), refs
            result_name = recovery.RESULT_DONE if ok else \
                recovery.RESULT_FAILED
            done.append(_step(action, result_name, at, detail))
            LOG.warning('Domain %s (%s): recovery ladder step %s %s: %s',
                        name, uuid, action, result_name, detail)
            if ok:
                return _report(action, recovery.RESULT_DONE, '%s (%s)' % (
                    detail, decision.reason), done), refs
        LOG.error('ALARM: domain %s (%s) is not recovered: every step of '
                  'its recovery ladder (%s) failed; nothing more is tried '
                  'until its guest answers again', name, uuid,
                  ', '.join(self.steps))
        return _report(self.steps[-1], recovery.RESULT_FAILED,
                       'every step of the recovery ladder failed: %s'
                       % ', '.join(self.steps), done), refs

    def _nmi(self, uuid, name, dom, deadline):
        """Inject, then wait for the agent. Returns (ok, detail, Late or
        None, [EvidenceRef] kept after a guest that did not come back)."""
        step = self.step
        result, late = step._bounded(uuid, name, deadlines_mod.ACTION,
                                     deadline, guest_nmi.inject_nmi, dom)
        if late is not None:
            return False, None, late, []
        if not result.ok:
            return False, result.detail, None, []
        grace_ends = step._monotonic() + self.nmi_grace
        while step._monotonic() < grace_ends:
            self._sleep(min(POLL, max(0.0, grace_ends - step._monotonic())))
            answers, late = step._bounded(
                uuid, name, deadlines_mod.ACTION, deadline,
                guest_nmi.agent_answers, dom, _LOOK_TIMEOUT)
            if late is not None:
                return False, None, late, []
            if answers:
                return True, 'NMI injected; the guest answered again', \
                    None, []
        console, late = step._bounded(
            uuid, name, deadlines_mod.CONSOLE, deadline,
            libvirt_actions.console_evidence, step.host.connection, uuid,
            step.evidence_store, step.console_lines)
        more = [] if late is not None else console[1]
        step._log_evidence(uuid, name, more, [])
        return False, ('NMI injected; the guest did not answer within '
                       'nmi_grace %d s' % self.nmi_grace), None, more


def _step(action, result, at, detail):
    return {'action': action, 'result': result,
            'at': notification_mod.format_time(at), 'detail': detail or ''}


def _report(action, result, detail, steps):
    return recovery.RecoveryReport(action, result, detail, tuple(steps))
