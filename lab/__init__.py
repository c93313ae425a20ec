"""The local test lab: a real libvirtd with small QEMU guests running
qemu-guest-agent, and a real masakari-api.

Integration tests, benchmarks and the demo all stand on this package. It is
not part of the shipped product.
"""

import os

# Built artefacts (guest kernel + initramfs, the masakari virtualenv) are kept
# here across runs and rebuilt only when their inputs change.
LAB_CACHE = os.environ.get('LAB_CACHE', '/var/cache/guest-health-monitor-lab')

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def require(condition, reason):
    """Fail (under CI) or skip (elsewhere) when a lab part is missing.

    CI must never pass by skipping the tests that matter, so a missing
    libvirt, QEMU or masakari-api is a failure whenever ``CI`` is set.
    """
    if condition:
        return
    import pytest
    if os.environ.get('CI'):
        pytest.fail('lab not available under CI: %s' % reason, pytrace=False)
    pytest.skip('lab not available: %s (run "make lab" first)' % reason)
