"""Named points on the notification path where fault-injection tests kill
the daemon.

The daemon calls :func:`reached` at each step whose interruption a crash
test must cover. It does nothing unless the environment variable
``GUEST_HEALTH_MONITOR_CRASH_AT`` names that step; then the process gets
SIGKILL at once, as from the OOM killer or a power cut: no handler, no
flush, no clean-up. Operators never set it.
"""

import os
import signal

ENV = 'GUEST_HEALTH_MONITOR_CRASH_AT'

# The notification is in the outbox; the domain record is not updated yet.
AFTER_ENQUEUE = 'after_enqueue'
# The engine answered the POST; the outbox has not recorded it yet.
AFTER_POST = 'after_post'
# The outbox recorded the delivery; the tracker has not looked at it yet.
AFTER_MARK_DELIVERED = 'after_mark_delivered'

ALL = (AFTER_ENQUEUE, AFTER_POST, AFTER_MARK_DELIVERED)


def reached(name):
    """Kill this process now if the environment asks to crash at ``name``."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
