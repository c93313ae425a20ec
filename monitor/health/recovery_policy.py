"""Self-recovery of a failed guest: which action to take, within a budget.

Pure code. The caller keeps, per domain, the epoch times of the recovery
actions taken (a plain list of floats, so any store can keep it and the
budget survives a daemon restart when the store is persistent), asks
:meth:`RecoveryPolicy.decide` what to do about a failure, carries the
action out through the libvirt edge, and turns the decision and its result
into a :class:`RecoveryReport` for the notification.

An action is counted against the budget when it is decided, not when it
succeeds: a reset that fails still touched the guest, and a guest that
cannot be reset must not be hammered with one attempt per failure.

The times and ``now`` must come from one clock that does not step: the
daemon's history (``monitor.store.recovery_history``) moves its times by
any step of the wall clock. A time after ``now`` counts as taken now, so
that a step the caller missed still neither refills the budget nor lets
an action escape it.
"""

from __future__ import annotations

import dataclasses
import typing

from oslo_config import cfg
from oslo_config import types

from monitor.errors import ConfigError

GROUP = 'recovery'

NONE = 'none'
RESET = 'reset'
RESTART = 'restart'
ACTIONS = (NONE, RESET, RESTART)
# Only for a guest paused on a disk I/O error ([recovery] io_error_action):
# resuming a guest that hangs does nothing.
RESUME = 'resume'
# A ladder step only: inject an NMI and wait [recovery] nmi_grace for the
# guest to come back on its own (a crash kernel writes its vmcore, then
# reboots).
NMI = 'nmi'
LADDER_STEPS = (NMI, RESET, RESTART)
# The action of a recovery that climbs [recovery] ladder.
LADDER = 'ladder'

# What became of the recovery, as the notification states it.
RESULT_NOT_REQUESTED = 'not_requested'
RESULT_DONE = 'done'
RESULT_FAILED = 'failed'
RESULT_BUDGET_EXHAUSTED = 'budget_exhausted'
# The mass-failure breaker was open (tripped): the host, not the guest,
# is suspected, and no guest is touched.
RESULT_BREAKER_OPEN = 'breaker_open'
# Stored with a notification while its recovery is under way; never sent.
RESULT_IN_PROGRESS = 'in_progress'
# The daemon stopped while the recovery was under way (found held in the
# outbox at the next start): whether the action reached the guest is
# unknown.
RESULT_INTERRUPTED = 'interrupted'
# A libvirt call of the recovery (the detail names it: console,
# screenshot or action) did not return within its deadline and the
# notification went without waiting for it; or an earlier such call on
# the domain is still stuck, so nothing was tried.
RESULT_TIMED_OUT = 'timed_out'
RESULTS = (RESULT_NOT_REQUESTED, RESULT_DONE, RESULT_FAILED,
           RESULT_BUDGET_EXHAUSTED, RESULT_BREAKER_OPEN, RESULT_IN_PROGRESS,
           RESULT_INTERRUPTED, RESULT_TIMED_OUT)

OPTS = [
    cfg.StrOpt(
        'action',
        default=NONE,
        choices=[
            (NONE, 'only notify; the guest is left as it is'),
            (RESET, 'hard reset of the guest (the reset button)'),
            (RESTART, 'destroy, then start the domain again; persistent '
                      'domains only (a transient one would be lost)'),
        ],
        help="""
What the monitor itself does to a guest whose agent stopped answering,
after capturing evidence and before notifying. Default none.

Only for hosts without an HA engine: with [notifier] driver = masakari the
engine recovers the VM, and any other value is refused at start so that
two recoverers never act on one VM. A domain's own metadata element may
choose another action for that domain.

Related options:

* [notifier] driver, [recovery] max_actions, [recovery] window
"""),
    cfg.IntOpt(
        'max_actions',
        default=3, min=1, max=1000,
        help="""
Most recovery actions on one domain within [recovery] window seconds.
Past it the monitor only notifies, saying the budget is exhausted, and
logs one alarm line: a guest that dies again and again after each reset
needs a person. From 1 to 1000. Default 3.
"""),
    cfg.IntOpt(
        'window',
        default=3600, min=1, max=2592000,
        help="""
Length in seconds of the sliding window in which [recovery] max_actions
applies; an action older than this no longer counts. From 1 to 2592000
(30 days). Default 3600.
"""),
    cfg.ListOpt(
        'ladder',
        default=None,
        item_type=types.String(choices=LADDER_STEPS),
        help="""
Steps tried in turn on a guest that failed, instead of [recovery] action,
until one brings it back: nmi (inject an NMI, then wait [recovery]
nmi_grace for the guest to answer again on its own: a guest with a crash
kernel writes its vmcore first), reset, restart. Each step's result and
time appear in the notification; the budget ([recovery] max_actions)
counts one ladder, whatever its steps. When the last step fails, one
alarm is logged and nothing more is tried until the guest answers again.
Example: nmi, reset. Default unset: the one step [recovery] action.

Only for hosts without an HA engine, like [recovery] action. A domain
whose metadata names its own action gets that one step.

Related options:

* [recovery] action, [recovery] nmi_grace
"""),
    cfg.IntOpt(
        'nmi_grace',
        default=60, min=5, max=3600,
        help="""
Seconds a ladder's nmi step waits for the guest's agent to answer again
(the NMI panicked it, its crash kernel wrote a vmcore and it rebooted)
before the next step. From 5 to 3600. Default 60.
"""),
]


def list_opts():
    return [(GROUP, OPTS)]


def check_conf(conf):
    """Refuse a ladder that cannot be used: with the HA engine, or with
    a step twice."""
    ladder = list(conf[GROUP].ladder or ())
    if not ladder:
        return
    if conf.notifier.driver == 'masakari':
        raise ConfigError(GROUP, 'ladder', 'cannot be used with [notifier] '
                          'driver = masakari: the HA engine recovers the VM '
                          'itself')
    if len(set(ladder)) != len(ladder):
        raise ConfigError(GROUP, 'ladder', 'names a step twice: %s'
                          % ', '.join(ladder))


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


class Decision(typing.NamedTuple):
    """What to do about one failure of one domain.

    ``action`` is what to carry out now (``none`` when nothing is wanted
    or the budget is exhausted). ``history`` is the domain's action times
    to keep after this decision: those still inside the window, plus now
    when an action is taken.
    """

    wanted: str
    action: str
    budget_exhausted: bool
    history: tuple
    # Epoch seconds when the budget allows an action again; None unless
    # exhausted.
    available_at: typing.Optional[float]
    # Operator wording, for the log line and the notification.
    reason: str


@dataclasses.dataclass(frozen=True)
class RecoveryReport:
    """The recovery part of a notification, as plain values."""

    action: str
    result: str
    detail: str = ''
    # A ladder's steps in order, each {action, result, at, detail}; empty
    # (and left out of the dict) for a one-step recovery.
    steps: tuple = ()

    def to_dict(self):
        values = dataclasses.asdict(self)
        if not self.steps:
            del values['steps']
        else:
            values['steps'] = [dict(step) for step in self.steps]
        return values

    @classmethod
    def from_dict(cls, values):
        values = dict(values)
        values['steps'] = tuple(values.get('steps') or ())
        return cls(**values)


def recent(history, now, window):
    """Action times that still count at ``now``: within the last
    ``window`` seconds. An action exactly ``window`` seconds old has
    expired.

    An action stamped after ``now`` can only come from a clock that
    stepped back since: it counts as taken ``now`` rather than not at
    all, so a clock step never refills the budget. Values that are no
    time at all (NaN) count for nothing."""
    return tuple(sorted(min(at, now) for at in history
                        if now - window < at))


class RecoveryPolicy:
    """The configured action and its budget."""

    def __init__(self, action=NONE, max_actions=3, window=3600):
        if action not in ACTIONS:
            raise ValueError('unknown recovery action %r' % (action,))
        self.action = action
        self.max_actions = max_actions
        self.window = window

    @classmethod
    def from_conf(cls, conf):
        group = conf[GROUP]
        return cls(group.action, group.max_actions, group.window)

    def decide(self, history, now, override=None):
        """Decide about a failure at ``now``.

        :param history: the domain's past action times (epoch seconds),
            as returned in an earlier ``Decision.history``; any order.
        :param override: the domain's own action from its metadata, or
            None to use the configured one.
        """
        wanted = self.action if override is None else override
        if wanted not in ACTIONS + (RESUME, LADDER):
            raise ValueError('unknown recovery action %r' % (wanted,))
        kept = recent(history, now, self.window)
        if wanted == NONE:
            return Decision(wanted, NONE, False, kept, None,
                            'no recovery action configured')
        if len(kept) >= self.max_actions:
            available_at = kept[len(kept) - self.max_actions] + self.window
            return Decision(
                wanted, NONE, True, kept, available_at,
                'recovery budget exhausted: %d action(s) in the last %d s '
                '(max_actions %d); no %s until %.0f s from now'
                % (len(kept), self.window, self.max_actions, wanted,
                   available_at - now))
        return Decision(wanted, wanted, False, kept + (now,), None,
                        '%s (%d of %d in %d s)'
                        % (wanted, len(kept) + 1, self.max_actions,
                           self.window))


def report(decision, succeeded=None, detail=''):
    """The RecoveryReport of a decision and, when an action was taken,
    whether it succeeded (with libvirt's words in ``detail``)."""
    if decision.budget_exhausted:
        return RecoveryReport(decision.wanted, RESULT_BUDGET_EXHAUSTED,
                              decision.reason)
    if decision.action == NONE:
        return RecoveryReport(NONE, RESULT_NOT_REQUESTED, decision.reason)
    if succeeded is None:
        raise ValueError('an action was taken: say whether it succeeded')
    return RecoveryReport(decision.action,
                          RESULT_DONE if succeeded else RESULT_FAILED,
                          detail)


def effective_action(configured, override, driver):
    """The action for one domain: its metadata's, else the configured one;
    always ``none`` with the masakari driver, where the engine recovers.

    Returns (action, note); ``note`` says why a metadata action is not
    used, for the caller to log once per domain, else ''.
    """
    if driver == 'masakari':
        if override not in (None, NONE):
            return NONE, ('its metadata asks for action %s, ignored: the HA '
                          'engine recovers VMs with [notifier] driver = '
                          'masakari' % override)
        return NONE, ''
    return (configured if override is None else override), ''


def notification_details(consecutive_misses, recovery_report, evidence=(),
                         reason=None):
    """The incident facts a notification carries besides the engine's
    fields, as a plain JSON-able dict kept with it in the outbox: why the
    guest was found failed (the tracker's reason: missed pings, a pvpanic
    crash, a watchdog...), consecutive misses, the recovery report and the
    evidence references (``evidence.EvidenceRef`` values or their
    dicts)."""
    return {
        'reason': reason,
        'consecutive_misses': int(consecutive_misses),
        'recovery': recovery_report.to_dict(),
        'evidence': [ref.to_dict() if hasattr(ref, 'to_dict') else dict(ref)
                     for ref in evidence],
    }


def ladder_of(configured, override, driver, ladder):
    """The steps of one domain's recovery: [recovery] ladder when it is
    set and the domain's metadata names no action of its own, else the
    one step of ``effective_action``."""
    if ladder and override is None and driver != 'masakari':
        return tuple(ladder)
    action, _note = effective_action(configured, override, driver)
    return () if action == NONE else (action,)
