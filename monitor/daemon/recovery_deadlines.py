"""How long each step of a recovery may take, and when a recovery that
still holds its slot means the bounds themselves failed.

A recovery makes three libvirt calls in turn, each on a native thread of
its own (``concurrency.NativeCall``): the console (look the domain up,
read its definition, read the tail of its console log), the screenshot,
and the action. Each has a bound of its own, and the whole step one more;
when one expires the recovery gives up on the call, releases its
notification as ``timed_out`` and frees its slot, whatever the call does
next.
"""

import typing

from oslo_config import cfg

# The calls of one recovery, as the notification, the log, the metrics
# and the status name them.
CONSOLE = 'console'
SCREENSHOT = 'screenshot'
ACTION = 'action'
STEPS = (CONSOLE, SCREENSHOT, ACTION)

# Seconds past [recovery] step_timeout after which a recovery that still
# holds its slot counts as a failure of the bound itself (the health check
# and the systemd watchdog say so): the bound is kept by a timer in the
# hub, so only a wedged hub or a bug overruns it by more than a moment;
# 30 s keep a starved CPU from failing the probe.
SLOT_MARGIN = 30.0

EVIDENCE_OPTS = [
    # A console tail is at most 256 KiB of a local file, read after one
    # lookup and one XML read over the libvirt socket: milliseconds when
    # all is well. 10 s leave room for a loaded host and still notify a
    # wedged libvirtd or a hung file system soon.
    cfg.IntOpt(
        'console_timeout',
        default=10, min=1, max=600,
        help="""
Seconds a recovery waits for the domain's definition and the tail of its
console log before it gives up: the notification is then sent at once with
the result timed_out, and nothing more is done to that guest until the
stuck call returns. From 1 to 600. Default 10.

Related options:

* [evidence] screenshot_timeout, [recovery] step_timeout
"""),
    # A screendump of a healthy QEMU takes well under a second, a 4K PPM
    # through a remote libvirt a few; a QEMU that does not answer its
    # monitor never returns. 30 s notify the wedged one in good time.
    cfg.IntOpt(
        'screenshot_timeout',
        default=30, min=1, max=600,
        help="""
Seconds a recovery waits for the guest's screenshot before it gives up: the
notification is then sent at once with the result timed_out and the
recovery action is not attempted (a QEMU that does not answer a screendump
does not answer a reset either). From 1 to 600. Default 30.

Related options:

* [evidence] console_timeout, [recovery] step_timeout
"""),
]

RECOVERY_OPTS = [
    # libvirt's destroy gives QEMU 10 s to end on SIGTERM, then up to 5 s
    # more after SIGKILL (longer with host devices), and starting a large
    # guest again may take tens of seconds; 90 s cover both.
    cfg.IntOpt(
        'action_timeout',
        default=90, min=5, max=3600,
        help="""
Seconds a recovery waits for its action (reset, or restart: destroy then
start) before it gives up: the notification is then sent at once with the
result timed_out, saying whether the action reached the guest is unknown.
From 5 to 3600. Default 90.

Related options:

* [recovery] action, [recovery] step_timeout
"""),
    # Above the three bounds together at their defaults (130 s), so that
    # it only bites when they are raised: it caps how long a failure
    # notification can be held, whatever the other bounds say.
    cfg.IntOpt(
        'step_timeout',
        default=150, min=10, max=7200,
        help="""
Longest a whole recovery (console, screenshot, action) may take once it has
its turn; past it the notification is sent at once with the result
timed_out. Caps how late a notification held for a recovery can be. A
recovery still holding its turn 30 s after this bound makes /healthz answer
503 and stops the systemd watchdog. From 10 to 7200. Default 150.

Related options:

* [evidence] console_timeout, [evidence] screenshot_timeout,
  [recovery] action_timeout
"""),
]


def list_opts():
    return [('evidence', EVIDENCE_OPTS), ('recovery', RECOVERY_OPTS)]


def register_opts(conf):
    conf.register_opts(EVIDENCE_OPTS, group='evidence')
    conf.register_opts(RECOVERY_OPTS, group='recovery')


class Deadlines(typing.NamedTuple):
    """Seconds each call of a recovery, and the whole step, may take."""

    console: float = 10.0
    screenshot: float = 30.0
    action: float = 90.0
    step: float = 150.0

    @classmethod
    def from_conf(cls, conf):
        return cls(conf.evidence.console_timeout,
                   conf.evidence.screenshot_timeout,
                   conf.recovery.action_timeout,
                   conf.recovery.step_timeout)

    def of(self, step):
        """The bound of one call (CONSOLE, SCREENSHOT or ACTION)."""
        return {CONSOLE: self.console, SCREENSHOT: self.screenshot,
                ACTION: self.action}[step]

    @property
    def slot_bound(self):
        """Seconds a recovery may hold its slot before that counts as the
        bounds failing."""
        return self.step + SLOT_MARGIN


OPTION_NAMES = {
    CONSOLE: '[evidence] console_timeout',
    SCREENSHOT: '[evidence] screenshot_timeout',
    ACTION: '[recovery] action_timeout',
}
STEP_OPTION = '[recovery] step_timeout'
