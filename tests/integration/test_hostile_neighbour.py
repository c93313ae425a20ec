"""One domain whose libvirt answers raise something unexpected must not
blind the monitor to the others: real libvirtd guests, the real console
script, the real masakari-api. Timings: interval 2 s, ping timeout 1 s,
threshold 3 (lab_options).

The hostile domain is made through the daemon's test hook
(GUEST_HEALTH_MONITOR_FAULTY_DOMAIN, see monitor/virt/host.py): its
ping or its listing raises a UnicodeDecodeError, as a binding decoding a
guest's garbage would.
"""

import re
import time

import pytest

from monitor.virt import fault_hook
from tests.integration.test_monitor_end_to_end import HEALTHY
from tests.integration.test_monitor_end_to_end import wait_notifications

STAGE_LOG = {
    'ping': r'WARNING .*Domain %s \(%s\): its ping raised UnicodeDecodeError',
    'list': r'WARNING .*Domain %s \(%s\) is not monitored: listing it raised '
            r'UnicodeDecodeError',
}


@pytest.mark.parametrize('stage', ['ping', 'list'])
def test_a_crashed_guest_is_notified_on_time_beside_a_domain_that_raises(
        lab_guests, masakari, monitor_daemon, monkeypatch, stage):
    hostile, victim = lab_guests(2)
    monkeypatch.setenv(fault_hook.FAULTY_DOMAIN_ENV,
                       '%s:%s' % (hostile.name, stage))
    daemon = monitor_daemon()
    daemon.wait_for_log(HEALTHY % victim.uuid, 60)
    daemon.wait_for_log(STAGE_LOG[stage] % (hostile.name, hostile.uuid), 30)

    crashed_at = time.monotonic()
    victim.control('panic')
    stored = wait_notifications(masakari, victim.uuid, 1, timeout=25)
    print('crash to accepted notification beside a hostile domain: %.1f s'
          % (time.monotonic() - crashed_at))
    assert len(stored) == 1, 'no notification within 25 s:\n' + daemon.tail()
    daemon.wait_for_log(r'%s\): error -> reported' % victim.uuid, 10)

    # Exactly one, and none for the domain that only raised.
    time.sleep(4)  # two more sweeps
    assert len(wait_notifications(masakari, victim.uuid, 2, 0)) == 1
    assert wait_notifications(masakari, hostile.uuid, 1, 0) == []
    log = daemon.log()
    assert 'Traceback' not in log
    # Warned about once, however many sweeps met it.
    assert len(re.findall(STAGE_LOG[stage] % (hostile.name, hostile.uuid),
                          log)) == 1
