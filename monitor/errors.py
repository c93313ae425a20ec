"""Every error the daemon's modules raise to one another.

One module, so a caller catches an error without importing the module
that raises it, and one configuration error: whatever finds a setting
that cannot work (option checks, logging, the notifier, the drivers)
raises :class:`ConfigError`, which names the option.

Exceptions used only for control flow inside one function stay private to
their module.
"""

from monitor import masking


class ConfigError(Exception):
    """A configuration problem, naming the option when there is one."""

    def __init__(self, group, option, message):
        self.group = group
        self.option = option
        self.message = message
        super().__init__(group, option, message)

    def __str__(self):
        # Messages may quote values; a URL among them keeps no password.
        message = masking.mask(self.message)
        if self.option is None:
            return message
        return '[%s] %s: %s' % (self.group or 'DEFAULT', self.option, message)


# -- health -----------------------------------------------------------------

class UnknownState(ValueError):
    """A stored state name is not a state of the machine."""

    def __init__(self, state, known):
        self.state = state
        super().__init__("unknown health state '%s' (known: %s)"
                         % (state, ', '.join(known)))


class InvalidTransition(ValueError):
    """The machine has no transition for this state and event."""

    def __init__(self, state, event):
        self.state = state
        self.event = event
        super().__init__(
            "no transition from health state '%s' on event '%s'"
            % (state, event))


# -- libvirt ----------------------------------------------------------------

class LibvirtUnavailable(Exception):
    """libvirt cannot be reached (daemon down, socket missing...)."""


class EventsUnavailable(Exception):
    """libvirt refused to deliver domain events on a connection."""


class StatsUnavailable(Exception):
    """libvirt gave no counters at all: the connection is lost, or it
    refused the call for every active domain."""


class AgentTimeoutUnchanged(Exception):
    """libvirt refused to set (or to find the domain to set) a domain's
    agent response timeout; ``gone``: the domain is no longer there or no
    longer running, and its runtime timeout went with it."""

    def __init__(self, text, gone=False):
        super().__init__(text)
        self.gone = gone


class DomainXMLError(ValueError):
    """The text is not a readable libvirt domain XML."""


# -- notifications ----------------------------------------------------------

class OutboxError(Exception):
    """The outbox cannot be opened or an operation on it is invalid."""


class OutboxFull(OutboxError):
    """``max_pending`` notifications already wait for delivery."""

    def __init__(self, max_size):
        super().__init__(f'outbox full: {max_size} notifications already '
                         'wait for delivery to the HA engine')
        self.max_size = max_size


class OutboxBusy(OutboxError):
    """Another process held the outbox's lock for longer than we wait."""

    def __init__(self, path, waited):
        super().__init__(f'outbox {path} is locked by another process '
                         f'(waited {waited:g} s); nothing was changed')
        self.path = path
        self.waited = waited


# -- files ------------------------------------------------------------------

class EvidenceError(Exception):
    """Evidence could not be stored."""


class StateDirInUse(Exception):
    """Another process holds the state directory."""

    def __init__(self, path, pid):
        self.path = path
        self.pid = pid
        super().__init__(path, pid)

    def __str__(self):
        holder = 'PID %d' % self.pid if self.pid else 'PID unknown'
        return ('another guest-health-monitor (%s) already uses state_path %s'
                % (holder, self.path))


# -- servers and tools ------------------------------------------------------

class MetricsServerError(OSError):
    """The metrics endpoint cannot listen (address in use, not local)."""


class StatusServerError(OSError):
    """The status socket cannot be served (an OSError, like the metrics
    endpoint's: the daemon reports it at start as "Cannot start: ...")."""


class DaemonNotRunning(Exception):
    """No daemon answers on the status socket: none is running."""


class DaemonNoAnswer(Exception):
    """The daemon's status socket accepted but gave no usable answer."""
