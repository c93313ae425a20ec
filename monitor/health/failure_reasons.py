"""Why a guest was found failed, as one of a fixed set of words: the
``reason`` label of ``guest_failures_total``.

The failure's text is the operator's wording (the health policy's, the
instant failures', the I/O error pauses', the probes'); its shape and the
application incident key tell the rest. Pure code.
"""

from monitor.health import instant_failures
from monitor.health import probes

MISSED_PINGS = 'missed_pings'
PVPANIC = 'pvpanic'
WATCHDOG = 'watchdog'
QEMU_ENDED = 'qemu_ended'
PROBE = probes.FAILURE_REASON
IO_ERROR = 'io_error'
FROZEN = 'frozen'
OTHER = 'other'
REASONS = (MISSED_PINGS, PVPANIC, WATCHDOG, QEMU_ENDED, PROBE, IO_ERROR,
           FROZEN, OTHER)

# (words in the failure's text, reason), first match wins: the watchdog's
# texts name a power-off that ends QEMU too.
_TEXTS = (
    ('watchdog fired', WATCHDOG),
    ('QEMU process', QEMU_ENDED),
    ('pvpanic', PVPANIC),
    ('guest crashed', PVPANIC),
    ('kernel panicked', PVPANIC),
    ('I/O error', IO_ERROR),
    ('frozen', FROZEN),
    ('application probe', PROBE),
    ('missed ping', MISSED_PINGS),
    ('agent did not come back', MISSED_PINGS),
)


def reason_of(text, shape=None, details=None):
    """The reason label of a failure notified with ``text``, ``shape``
    and ``details``."""
    if (details or {}).get(probes.INCIDENT_KEY) == \
            probes.INCIDENT_APPLICATION:
        return PROBE
    text = text or ''
    for words, reason in _TEXTS:
        if words in text:
            return reason
    if shape == instant_failures.QEMU_ENDED:
        return QEMU_ENDED
    return OTHER
