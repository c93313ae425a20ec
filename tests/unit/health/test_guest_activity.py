"""A silent agent on a guest that still does I/O is not a dead guest."""

import pytest
from oslo_config import cfg

from monitor import errors
from monitor.conf import checks
from monitor.conf import loading
from monitor.health import guest_activity as ga

A = ga.Activity
UUID = '0b6c1b9e-5d1e-4b5a-8f0e-1d2a3b4c5d6e'
FLOORS = ga.NoiseFloors(disk_requests=4, sent_packets=10)


def disk(name='vda', reads=0, writes=0, flushes=0):
    return ga.DiskCounters(name, reads, reads * 4096, writes, writes * 4096,
                           flushes)


def nic(name='vnet0', received=0, sent=0):
    return ga.NicCounters(name, received * 100, received, sent * 100, sent)


def counters(at=0.0, state=ga.RUNNING, vcpu_ns=0, vcpus=1, disks=(disk(),),
             nics=(nic(),), uuid=UUID):
    return ga.DomainCounters(uuid=uuid, name='vm-1', at=at, state=state,
                             vcpu_time_ns=vcpu_ns, vcpu_count=vcpus,
                             disks=tuple(disks), nics=tuple(nics))


def assess(before, after):
    return ga.assess(before, after, FLOORS)


# -- the verdicts --------------------------------------------------------------

def test_disk_writes_above_the_floor_make_the_guest_active():
    result = assess(counters(), counters(at=12, disks=[disk(writes=20)]))

    assert result.activity is A.ACTIVE
    assert result.disk_requests == 20
    assert result.reason == '20 disk requests, 0 packets sent in 12 s ' \
                            '(vCPUs 0% busy)'


def test_reads_and_flushes_count_as_disk_requests():
    before = counters(disks=[disk(reads=10, flushes=3)])
    after = counters(at=5, disks=[disk(reads=13, flushes=5)])

    result = assess(before, after)

    assert result.disk_requests == 5
    assert result.activity is A.ACTIVE


def test_sent_packets_above_the_floor_make_the_guest_active():
    result = assess(counters(), counters(at=10, nics=[nic(sent=11)]))

    assert result.activity is A.ACTIVE
    assert result.sent_packets == 11


def test_a_panicked_guest_spinning_its_vcpu_without_io_is_silent():
    before = counters(vcpu_ns=5 * 10**9)
    after = counters(at=10, vcpu_ns=15 * 10**9)

    result = assess(before, after)

    assert result.activity is A.SILENT
    assert result.vcpu_busy == 1.0
    assert result.reason == 'no I/O above the noise floor: 0 disk ' \
                            'requests, 0 packets sent in 10 s (vCPUs 100% busy)'


def test_io_at_the_noise_floors_is_still_silent():
    after = counters(at=10, disks=[disk(writes=2, flushes=2)],
                     nics=[nic(sent=10)])

    result = assess(counters(), after)

    assert result.activity is A.SILENT
    assert (result.disk_requests, result.sent_packets) == (4, 10)


def test_received_packets_are_no_sign_of_life():
    # The network keeps delivering to a dead guest.
    result = assess(counters(), counters(at=10, nics=[nic(received=5000)]))

    assert result.activity is A.SILENT


def test_zero_floors_take_any_io_as_activity():
    floors = ga.NoiseFloors(disk_requests=0, sent_packets=0)

    result = ga.assess(counters(), counters(at=3, nics=[nic(sent=1)]),
                       floors)

    assert result.activity is A.ACTIVE


def test_counts_are_summed_over_every_disk_and_interface():
    before = counters(disks=[disk('vda'), disk('vdb')],
                      nics=[nic('vnet0'), nic('vnet1')])
    after = counters(at=10, disks=[disk('vda', writes=3),
                                   disk('vdb', writes=2)],
                     nics=[nic('vnet0', sent=6), nic('vnet1', sent=5)])

    result = assess(before, after)

    assert (result.disk_requests, result.sent_packets) == (5, 11)
    assert result.activity is A.ACTIVE


def test_crashed_state_is_silent_whatever_the_counters():
    after = counters(at=10, state=ga.CRASHED, disks=[disk(writes=100)])

    result = assess(counters(), after)

    assert result.activity is A.SILENT
    assert result.reason == 'libvirt reports the guest crashed'


# -- nothing to compare: report as without corroboration --------------------------

def test_without_a_snapshot_from_the_first_miss_the_verdict_is_unknown():
    result = assess(None, counters(at=10, disks=[disk(writes=100)]))

    assert result.activity is A.UNKNOWN
    assert result.reason == 'no I/O counters from the start of the silence'


def test_a_guest_without_disks_or_interfaces_is_unknown():
    result = assess(counters(disks=(), nics=()),
                    counters(at=10, disks=(), nics=(), vcpu_ns=10**9))

    assert result.activity is A.UNKNOWN


def test_devices_present_once_are_not_compared():
    before = counters(disks=[disk('vda')], nics=())
    after = counters(at=10, disks=[disk('vdb', writes=500)], nics=())

    assert assess(before, after).activity is A.UNKNOWN


def test_a_counter_that_went_down_belongs_to_a_new_device():
    before = counters(disks=[disk(writes=900)], nics=())
    after = counters(at=10, disks=[disk(writes=30)], nics=())

    assert assess(before, after).activity is A.UNKNOWN


def test_a_device_that_compares_decides_when_another_does_not():
    before = counters(disks=[disk(writes=900)], nics=[nic(sent=1)])
    after = counters(at=10, disks=[disk(writes=30)], nics=[nic(sent=50)])

    result = assess(before, after)

    assert result.activity is A.ACTIVE
    assert result.disk_requests is None


def test_a_domain_that_is_not_running_is_unknown():
    result = assess(counters(), counters(at=10, state=ga.PAUSED))

    assert result.activity is A.UNKNOWN
    assert result.reason == 'domain not running (paused)'


def test_counters_of_two_domains_are_refused():
    other = counters(uuid='11111111-2222-3333-4444-555555555555')

    with pytest.raises(ValueError, match='two domains'):
        assess(counters(), other)


def test_vcpu_busy_is_the_share_of_all_vcpus():
    before = counters(vcpu_ns=0, vcpus=4)
    after = counters(at=10, vcpu_ns=10 * 10**9, vcpus=4)

    assert assess(before, after).vcpu_busy == pytest.approx(0.25)


def test_vcpu_busy_is_unknown_without_vcpu_time():
    after = counters(at=10)._replace(vcpu_time_ns=None)

    result = assess(counters(), after)

    assert result.vcpu_busy is None
    assert '(vCPUs' not in result.reason


# -- options ---------------------------------------------------------------------

def conf_with(**overrides):
    conf = cfg.ConfigOpts()
    ga.register_opts(conf)
    conf([], default_config_files=[])
    for name, value in overrides.items():
        conf.set_override(name, value, group='monitor')
    return conf


def test_corroboration_is_on_by_default_with_the_documented_floors():
    conf = conf_with()

    assert conf.monitor.corroborate_with_io is True
    assert ga.NoiseFloors.from_conf(conf) == ga.NoiseFloors(4, 10)
    assert ga.NoiseFloors() == ga.NoiseFloors.from_conf(conf)


def test_floors_come_from_the_options():
    conf = conf_with(io_noise_disk_requests=0, io_noise_sent_packets=100)

    assert ga.NoiseFloors.from_conf(conf) == ga.NoiseFloors(0, 100)


def test_negative_floors_are_refused():
    conf = conf_with()

    with pytest.raises(ValueError):
        conf.set_override('io_noise_disk_requests', -1, group='monitor')


@pytest.mark.parametrize('option,value', [
    ('corroborate_with_io', 'maybe'),
    ('io_noise_disk_requests', '-1'),
    ('io_noise_sent_packets', 'ten'),
])
def test_a_bad_value_is_refused_naming_the_option(tmp_path, option,
                                                         value):
    path = tmp_path / 'ghm.conf'
    path.write_text('[DEFAULT]\nstate_path = %s\n[notifier]\n'
                    'endpoint = http://127.0.0.1:15868/v1\n'
                    '[monitor]\n%s = %s\n'
                    % (tmp_path / 'state', option, value))

    conf = loading.build_conf()
    # Registered here: the daemon does not act on these options yet.
    ga.register_opts(conf)
    conf(args=['--config-file', str(path)], default_config_files=[])

    with pytest.raises(errors.ConfigError) as failure:
        checks.validate(conf)

    assert str(failure.value).startswith('[monitor] %s: ' % option)


def test_options_are_listed_for_the_sample_config():
    [(group, opts)] = ga.list_opts()

    assert group == 'monitor'
    assert {opt.dest for opt in opts} == {
        'corroborate_with_io', 'io_noise_disk_requests',
        'io_noise_sent_packets'}


# -- silent periods: what the tracker keeps between misses ----------------------------

def writing(at, writes):
    return counters(at=at, disks=[disk(writes=writes)])


def test_the_first_miss_opens_the_period_and_the_threshold_judges_it():
    periods = ga.SilentPeriods(floors=FLOORS)

    periods.missed(UUID, writing(0, 0))
    periods.missed(UUID, writing(5, 10))
    judgement = periods.judge(UUID, writing(10, 20))

    assert judgement.defer is True
    assert judgement.newly_active is True
    assert judgement.assessment.disk_requests == 20


def test_a_silent_guest_is_not_held():
    periods = ga.SilentPeriods(floors=FLOORS)
    periods.missed(UUID, writing(0, 7))

    judgement = periods.judge(UUID, writing(10, 7))

    assert judgement.defer is False
    assert judgement.assessment.activity is A.SILENT


def test_an_active_guest_is_logged_and_counted_once_per_incident():
    periods = ga.SilentPeriods(floors=FLOORS)
    periods.missed(UUID, writing(0, 0))

    first = periods.judge(UUID, writing(10, 20))
    periods.missed(UUID, writing(15, 40))
    second = periods.judge(UUID, writing(15, 40))

    assert (first.defer, first.newly_active) == (True, True)
    assert (second.defer, second.newly_active) == (True, False)


def test_a_guest_that_stops_working_later_is_reported():
    periods = ga.SilentPeriods(floors=FLOORS)
    periods.missed(UUID, writing(0, 0))
    assert periods.judge(UUID, writing(10, 50)).defer is True

    # It panics: no more writes since the last judgement, though the
    # period as a whole saw plenty.
    judgement = periods.judge(UUID, writing(15, 50))

    assert judgement.defer is False
    assert judgement.assessment.disk_requests == 0


def test_a_new_incident_is_logged_again():
    periods = ga.SilentPeriods(floors=FLOORS)
    periods.missed(UUID, writing(0, 0))
    periods.judge(UUID, writing(10, 20))

    periods.ended(UUID)
    periods.missed(UUID, writing(100, 20))
    judgement = periods.judge(UUID, writing(110, 40))

    assert UUID in periods
    assert (judgement.defer, judgement.newly_active) == (True, True)


def test_without_counters_at_the_first_miss_the_next_ones_open_the_period():
    periods = ga.SilentPeriods(floors=FLOORS)

    periods.missed(UUID, None)
    assert UUID not in periods
    assert periods.judge(UUID, writing(5, 20)).defer is False
    periods.missed(UUID, writing(5, 20))
    judgement = periods.judge(UUID, writing(10, 40))

    assert judgement.defer is True


def test_a_threshold_of_one_has_no_period_to_judge():
    periods = ga.SilentPeriods(floors=FLOORS)

    periods.missed(UUID, writing(0, 5))
    judgement = periods.judge(UUID, writing(0, 5))

    assert judgement.defer is False


def test_with_corroboration_off_nothing_is_held():
    periods = ga.SilentPeriods(enabled=False, floors=FLOORS)
    periods.missed(UUID, writing(0, 0))

    judgement = periods.judge(UUID, writing(10, 500))

    assert judgement.defer is False
    assert judgement.assessment.reason == 'I/O corroboration is off'


def test_periods_of_domains_gone_from_the_host_are_dropped():
    other = '99999999-0000-4000-8000-000000000009'
    periods = ga.SilentPeriods(floors=FLOORS)
    periods.missed(UUID, writing(0, 0))
    periods.missed(other, counters(uuid=other))

    periods.keep_only([other])

    assert UUID not in periods
    assert other in periods


def test_silent_periods_follow_the_options():
    periods = ga.SilentPeriods.from_conf(conf_with(
        corroborate_with_io=False, io_noise_disk_requests=7))

    assert periods.enabled is False
    assert periods.floors == ga.NoiseFloors(7, 10)
