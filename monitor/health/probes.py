"""Application probes: what a probe is, how one is declared, and how its
results turn into an application failure.

A guest whose agent answers guest-ping can still be useless: the service
inside has died. A probe asks the guest itself, through its agent:

- ``exec``: run a command (guest-exec, output captured); it passes when
  it exits 0 within ``timeout_seconds``. At most one run is in flight per
  probe: a command that has not ended is a failed probe, and no second
  one starts until guest-exec-status says the first one ended (qemu-ga
  never kills a command that overran, so starting another each period
  would pile them up in the guest).
- ``heartbeat``: read a small file the application rewrites with the
  Unix time (guest-file-open/read/close); it passes while that time is at
  most ``max_age`` seconds old by the guest's own clock (guest-get-time),
  or by the host's when the agent will not tell.

The period, timeout and thresholds have KubeVirt's names (snake_case) and
defaults: ``period_seconds`` 10, ``timeout_seconds`` 1,
``failure_threshold`` 3, ``success_threshold`` 1. A probe fails the
application after ``failure_threshold`` failed runs in a row and passes it
again after ``success_threshold`` passed runs in a row.

An agent that refuses the commands a probe needs (qemu-ga's allow or
deny lists) makes the probe *unavailable*: said once, never a failure.

Pure code: parsing and judging; the agent calls are in
``monitor.virt.guest_probes`` and the loop that runs them in
``monitor.daemon.probe_runner``.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import typing

from monitor import masking
from monitor.health.instant_failures import AGENT_ERROR
from monitor.health.instant_failures import Shape

EXEC = 'exec'
HEARTBEAT = 'heartbeat'
KINDS = (EXEC, HEARTBEAT)

# KubeVirt's defaults.
DEFAULT_PERIOD = 10
DEFAULT_TIMEOUT = 1
DEFAULT_FAILURE_THRESHOLD = 3
DEFAULT_SUCCESS_THRESHOLD = 1
# VMware HA application monitoring expects a heartbeat every 30 s.
DEFAULT_MAX_AGE = 30

# Bounds: a value past them is a typo, not a wish.
MAX_PERIOD = 86400
MAX_TIMEOUT = 60
MAX_THRESHOLD = 1000
MAX_MAX_AGE = 86400
MAX_PROBES = 8
MAX_ARGS = 32
MAX_PATH_CHARS = 255
MAX_ARG_CHARS = 255
MAX_NAME_CHARS = 32
# Output kept of an exec probe's run (stdout, then stderr), for evidence.
MAX_OUTPUT_BYTES = 4096
# Most of a heartbeat file read: a Unix time and a newline need 20.
MAX_HEARTBEAT_BYTES = 64

_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]*$')

# The notification of an application failure, for drivers other than the
# HA engine: masakari-api would recover the VM for AGENT_ERROR, so that
# shape is used only when the operator opts in ([probes] notify_masakari).
APPLICATION = Shape('APPLICATION_ERROR', 'PROBE_FAILED')
ENGINE_SHAPE = AGENT_ERROR
# The stable key of an application failure's notification details:
# details[INCIDENT_KEY] == INCIDENT_APPLICATION; a guest failure has none.
INCIDENT_KEY = 'incident'
INCIDENT_APPLICATION = 'application'
# The reason label of guest_failures_total.
FAILURE_REASON = 'probe'

_ATTRIBUTES = ('name', 'kind', 'path', 'file', 'max_age', 'period_seconds',
               'timeout_seconds', 'failure_threshold', 'success_threshold')
_INTEGERS = {
    'max_age': (1, MAX_MAX_AGE),
    'period_seconds': (1, MAX_PERIOD),
    'timeout_seconds': (1, MAX_TIMEOUT),
    'failure_threshold': (1, MAX_THRESHOLD),
    'success_threshold': (1, MAX_THRESHOLD),
}


@dataclasses.dataclass(frozen=True)
class ProbeSpec:
    """One declared probe."""

    name: str
    kind: str
    # exec: the command's absolute path and its arguments.
    path: typing.Optional[str] = None
    args: tuple = ()
    # heartbeat: the file's absolute path in the guest, and how old its
    # time may be.
    file: typing.Optional[str] = None
    max_age: int = DEFAULT_MAX_AGE
    period_seconds: int = DEFAULT_PERIOD
    timeout_seconds: int = DEFAULT_TIMEOUT
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    success_threshold: int = DEFAULT_SUCCESS_THRESHOLD

    def describe(self):
        """Operator wording: ``exec /usr/bin/check-db`` or ``heartbeat
        /run/app.heartbeat (max_age 30 s)``."""
        if self.kind == EXEC:
            return 'exec %s' % ' '.join((self.path,) + self.args)
        return 'heartbeat %s (max_age %d s)' % (self.file, self.max_age)


class Parsed(typing.NamedTuple):
    spec: typing.Optional[ProbeSpec]
    # Why the probe was refused; None when it was read.
    error: typing.Optional[str]


def _quoted(text):
    return masking.outside(str(text), 80)


def _checked_text(what, value, limit):
    if len(value) > limit:
        return '%s is %d characters long, more than %d' % (what, len(value),
                                                           limit)
    if masking.escape(value) != value:
        return '%s holds control characters' % what
    return None


def probe_from_attributes(values, args=()):
    """A probe from its attributes (``{name: text}``) and, for exec, its
    arguments. Returns :class:`Parsed`: the spec, or None and why."""
    for attribute in values:
        if attribute not in _ATTRIBUTES:
            return Parsed(None, 'unknown probe attribute %s (known: %s)'
                          % (_quoted(attribute), ', '.join(_ATTRIBUTES)))
    fields = {}
    for attribute, (low, high) in _INTEGERS.items():
        if attribute not in values:
            continue
        text = values[attribute].strip()
        try:
            number = int(text, 10)
        except ValueError:
            return Parsed(None, '%s="%s": must be an integer'
                          % (attribute, _quoted(text)))
        if not low <= number <= high:
            return Parsed(None, '%s="%s": must be between %d and %d'
                          % (attribute, _quoted(text), low, high))
        fields[attribute] = number
    name = values.get('name', '').strip()
    if not name:
        return Parsed(None, 'a probe needs a name')
    if len(name) > MAX_NAME_CHARS or not _NAME.match(name):
        return Parsed(None, 'probe name "%s": letters, digits, "_", "." and '
                      '"-", at most %d characters' % (_quoted(name),
                                                      MAX_NAME_CHARS))
    kind = values.get('kind', '').strip()
    if kind not in KINDS:
        return Parsed(None, 'probe %s: kind="%s" must be one of %s'
                      % (name, _quoted(kind), ', '.join(KINDS)))
    if fields.get('timeout_seconds', DEFAULT_TIMEOUT) >= \
            fields.get('period_seconds', DEFAULT_PERIOD):
        return Parsed(None, 'probe %s: timeout_seconds must be shorter '
                      'than period_seconds' % name)
    own = 'path' if kind == EXEC else 'file'
    other = 'file' if kind == EXEC else 'path'
    if other in values or (kind == EXEC and 'max_age' in values):
        return Parsed(None, 'probe %s: %s is not an attribute of a %s probe'
                      % (name, other if other in values else 'max_age',
                         kind))
    if kind == HEARTBEAT and args:
        return Parsed(None, 'probe %s: a heartbeat probe takes no arguments'
                      % name)
    location = values.get(own, '').strip()
    error = _checked_text(own, location, MAX_PATH_CHARS)
    if error:
        return Parsed(None, 'probe %s: %s' % (name, error))
    if not location.startswith('/'):
        return Parsed(None, 'probe %s: %s must be an absolute path in the '
                      'guest' % (name, own))
    args = tuple(args)
    if len(args) > MAX_ARGS:
        return Parsed(None, 'probe %s: %d arguments, more than %d'
                      % (name, len(args), MAX_ARGS))
    for arg in args:
        error = _checked_text('an argument', arg, MAX_ARG_CHARS)
        if error:
            return Parsed(None, 'probe %s: %s' % (name, error))
    fields[own] = location
    if kind == EXEC:
        fields['args'] = args
    return Parsed(ProbeSpec(name=name, kind=kind, **fields), None)


def parse_config_probe(text):
    """A probe from one value of ``[probes] probe``: comma-separated
    ``key=value`` pairs, the exec arguments as ``args`` split on
    whitespace, e.g. ``name=db, kind=exec, path=/usr/local/bin/check-db,
    args=--quick -v, period_seconds=10``."""
    values = {}
    args = ()
    for part in text.split(','):
        if not part.strip():
            continue
        key, sep, value = part.partition('=')
        key = key.strip()
        if not sep:
            return Parsed(None, '"%s" is not key=value' % _quoted(part))
        if key in values or (key == 'args' and args):
            return Parsed(None, '%s is given twice' % _quoted(key))
        if key == 'args':
            args = tuple(value.split())
        else:
            values[key] = value.strip()
    return probe_from_attributes(values, args)


def unique(specs):
    """Why ``specs`` cannot be one domain's probes, or None."""
    if len(specs) > MAX_PROBES:
        return '%d probes, more than %d' % (len(specs), MAX_PROBES)
    names = [spec.name for spec in specs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        return 'probe name %s is given twice' % ', '.join(twice)
    return None


# -- results ----------------------------------------------------------------

class Outcome(str, enum.Enum):
    PASSED = 'passed'
    FAILED = 'failed'
    # The agent refuses the commands the probe needs.
    UNAVAILABLE = 'unavailable'
    # Nothing was learnt about the application (no connection, the
    # domain went away, an agent that did not answer at all: the ping
    # judges that one).
    UNKNOWN = 'unknown'


class ProbeResult(typing.NamedTuple):
    outcome: Outcome
    # Operator wording: the exit code, how old the heartbeat was, or the
    # agent's error.
    detail: str
    # An exec probe's captured output, at most MAX_OUTPUT_BYTES, as text.
    output: str = ''
    exit_code: typing.Optional[int] = None
    # guest-exec's pid of a command still running after its timeout:
    # the next run asks for its status instead of starting another.
    in_flight: typing.Optional[int] = None


def heartbeat_result(spec, content, now, host_clock=False):
    """Judge a heartbeat file's ``content`` (bytes, at most
    MAX_HEARTBEAT_BYTES) read at ``now`` (Unix seconds by the guest's
    clock, or by the host's when ``host_clock``: the agent would not
    tell the guest's)."""
    clock = " by the host's clock" if host_clock else ''

    text = content.decode('ascii', 'replace').strip()
    try:
        beat = float(text.split()[0]) if text else None
    except ValueError:
        beat = None
    if beat is None or beat != beat or beat < 0:
        return ProbeResult(Outcome.FAILED, '%s holds no Unix time: "%s"'
                           % (spec.file, _quoted(text[:32])))
    age = now - beat
    if age > spec.max_age:
        return ProbeResult(Outcome.FAILED, 'heartbeat in %s is %.0f s old%s, '
                           'more than max_age %d s' % (spec.file, age, clock,
                                                       spec.max_age))
    return ProbeResult(Outcome.PASSED, 'heartbeat in %s is %.0f s old%s'
                       % (spec.file, max(0.0, age), clock))


def exec_result(spec, exited, exit_code, output, pid, signal=None):
    """Judge one exec run: whether it ``exited`` within the timeout and
    with which code (or ``signal``); ``output`` is bytes, cut to
    MAX_OUTPUT_BYTES here."""
    text = output[:MAX_OUTPUT_BYTES].decode('utf-8', 'replace')
    if not exited:
        return ProbeResult(Outcome.FAILED, '%s did not end within %d s '
                           '(still running in the guest as pid %d; no '
                           'other run starts until it ends)'
                           % (spec.path, spec.timeout_seconds, pid), text,
                           None, pid)
    if signal is not None:
        return ProbeResult(Outcome.FAILED, '%s was killed by signal %d'
                           % (spec.path, signal), text, exit_code)
    if exit_code == 0:
        return ProbeResult(Outcome.PASSED, '%s exited 0' % spec.path, text,
                           0)
    return ProbeResult(Outcome.FAILED, '%s exited %s' % (spec.path,
                                                         exit_code),
                       text, exit_code)


# -- state ------------------------------------------------------------------

UNKNOWN_STATUS = 'unknown'
PASSING = 'passing'
FAILING = 'failing'
UNAVAILABLE = 'unavailable'


class Change(str, enum.Enum):
    """What a result changed, for the caller to act on once."""
    NONE = 'none'
    FAILED = 'failed'
    RECOVERED = 'recovered'
    UNAVAILABLE = 'unavailable'
    AVAILABLE = 'available'


@dataclasses.dataclass(frozen=True)
class ProbeState:
    """One probe's standing on one domain."""

    status: str = UNKNOWN_STATUS
    failures: int = 0
    successes: int = 0
    # A command still running in the guest (guest-exec pid).
    in_flight: typing.Optional[int] = None
    last: typing.Optional[ProbeResult] = None


def judge(spec, state, result):
    """The state after ``result``, and what changed
    (:class:`Change`)."""
    if result.outcome is Outcome.UNKNOWN:
        return dataclasses.replace(state, in_flight=result.in_flight), \
            Change.NONE
    if result.outcome is Outcome.UNAVAILABLE:
        change = (Change.NONE if state.status == UNAVAILABLE
                  else Change.UNAVAILABLE)
        return ProbeState(UNAVAILABLE, 0, 0, None, result), change
    was = state.status
    if was == UNAVAILABLE:
        # Counted afresh from here.
        state = ProbeState()
    if result.outcome is Outcome.PASSED:
        successes = state.successes + 1
        status = state.status
        change = Change.NONE
        if status == FAILING:
            if successes >= spec.success_threshold:
                status, change = PASSING, Change.RECOVERED
        else:
            status = PASSING
        new = ProbeState(status, 0, successes, None, result)
    else:
        failures = state.failures + 1
        status = state.status
        change = Change.NONE
        if status != FAILING and failures >= spec.failure_threshold:
            status, change = FAILING, Change.FAILED
        new = ProbeState(status, failures, 0, result.in_flight, result)
    if was == UNAVAILABLE and change is Change.NONE:
        change = Change.AVAILABLE
    return new, change


def failure_reason(spec, state):
    """Operator wording of an application failure."""
    detail = state.last.detail if state.last is not None else ''
    return ('application probe %s (%s) failed %d time(s) in a row: %s'
            % (spec.name, spec.describe(), state.failures, detail))


def failure_details(spec, state):
    """The details an application failure's notification carries besides
    the usual ones (``recovery.notification_details``)."""
    last = state.last
    return {
        INCIDENT_KEY: INCIDENT_APPLICATION,
        'probe': {
            'name': spec.name,
            'kind': spec.kind,
            'target': spec.path if spec.kind == EXEC else spec.file,
            'failures': state.failures,
            'detail': last.detail if last is not None else '',
            'exit_code': last.exit_code if last is not None else None,
            'output': last.output if last is not None else '',
        },
    }
