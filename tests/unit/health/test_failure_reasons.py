"""Each failure's text, shape and details give one reason label of a
fixed set."""

import pytest

from monitor.health import failure_reasons as reasons
from monitor.health import instant_failures
from monitor.health import probes


@pytest.mark.parametrize('text, reason', [
    ('3 consecutive missed pings (failure threshold 3)', reasons.MISSED_PINGS),
    ('agent did not come back within 300 s after restart',
     reasons.MISSED_PINGS),
    ('guest kernel panicked (reported by its pvpanic device)',
     reasons.PVPANIC),
    ('guest crashed and libvirt stopped it', reasons.PVPANIC),
    ('QEMU process of the guest ended unexpectedly', reasons.QEMU_ENDED),
    ('watchdog fired; libvirt powered the guest off', reasons.WATCHDOG),
    ('guest paused on a disk I/O error for 60 s (vda)', reasons.IO_ERROR),
    ('something new', reasons.OTHER),
])
def test_the_text_names_the_reason(text, reason):
    assert reasons.reason_of(text) == reason


def test_an_application_failure_is_a_probe_whatever_its_text():
    details = {probes.INCIDENT_KEY: probes.INCIDENT_APPLICATION}

    assert reasons.reason_of('exited 1', probes.APPLICATION, details) == \
        reasons.PROBE


def test_the_shape_qemu_ended_tells_what_the_text_does_not():
    assert reasons.reason_of('x', instant_failures.QEMU_ENDED) == \
        reasons.QEMU_ENDED
