"""When a guest paused on a disk I/O error becomes a failure to report:
after [monitor] io_error_grace, once per pause, never for a pause by a
client."""

import pytest

from monitor.health import io_error_pauses
from monitor.health import lifecycle
from monitor.health.lifecycle import EventKind
from monitor.health.lifecycle import IOErrorAction
from monitor.health.lifecycle import IOErrorInfo
from monitor.health.lifecycle import LifecycleEvent
from monitor.health.lifecycle import SuspendedDetail

UUID = '6f1f5a7e-2c8e-4d0a-9a57-000000000001'
NAME = 'instance-00000001'
T0 = 1_700_000_000.0
DISK = IOErrorInfo('virtio-disk1', '/srv/data.img', 'enospc')


def lifecycle_event(code, detail=None, at=T0):
    return lifecycle.DomainEvent(UUID, NAME, EventKind.LIFECYCLE, code,
                                 detail, at)


def io_error(action=IOErrorAction.PAUSE, info=DISK, at=T0):
    return lifecycle.DomainEvent(UUID, NAME, EventKind.IO_ERROR, action,
                                 info, at)


IO_PAUSE = lifecycle_event(LifecycleEvent.SUSPENDED, SuspendedDetail.IOERROR)
USER_PAUSE = lifecycle_event(LifecycleEvent.SUSPENDED,
                             SuspendedDetail.PAUSED)


@pytest.fixture
def pauses():
    return io_error_pauses.IOErrorPauses(grace=60)


def test_a_pause_on_an_io_error_is_due_once_the_grace_is_over(pauses):
    pauses.saw(io_error())
    pauses.saw(IO_PAUSE)

    assert pauses.due(T0 + 59) == []
    [due] = pauses.due(T0 + 60)
    assert (due.uuid, due.name, due.since) == (UUID, NAME, T0)


def test_each_pause_is_due_once(pauses):
    pauses.saw(IO_PAUSE)

    assert len(pauses.due(T0 + 60)) == 1
    assert pauses.due(T0 + 120) == []


def test_the_reason_names_the_disk_libvirts_error_and_how_long(pauses):
    pauses.saw(io_error())
    pauses.saw(IO_PAUSE)

    [due] = pauses.due(T0 + 61)

    assert due.reason(T0 + 61) == (
        'guest paused on a disk I/O error for 61 s (disk virtio-disk1 '
        '(/srv/data.img): enospc)')


def test_a_pause_without_a_reason_event_still_says_so(pauses):
    pauses.saw(IO_PAUSE)

    [due] = pauses.due(T0 + 60)

    assert 'libvirt did not say which disk' in due.reason(T0 + 60)


def test_a_grace_of_zero_reports_the_pause_at_once():
    pauses = io_error_pauses.IOErrorPauses(grace=0)
    pauses.saw(IO_PAUSE)

    assert len(pauses.due(T0)) == 1


def test_a_pause_by_a_client_is_never_due(pauses):
    pauses.saw(USER_PAUSE)

    assert UUID not in pauses
    assert pauses.due(T0 + 3600) == []


def test_an_error_reported_to_the_guest_pauses_nothing(pauses):
    pauses.saw(io_error(IOErrorAction.REPORT))

    assert pauses.due(T0 + 3600) == []


@pytest.mark.parametrize('ending', [LifecycleEvent.RESUMED,
                                    LifecycleEvent.STOPPED,
                                    LifecycleEvent.STARTED,
                                    LifecycleEvent.UNDEFINED])
def test_a_guest_that_runs_again_or_is_gone_within_the_grace_is_not_due(
        pauses, ending):
    pauses.saw(IO_PAUSE)
    pauses.saw(lifecycle_event(ending, at=T0 + 30))

    assert pauses.due(T0 + 60) == []


def test_a_new_pause_after_a_resume_counts_from_its_own_start(pauses):
    pauses.saw(IO_PAUSE)
    pauses.saw(lifecycle_event(LifecycleEvent.RESUMED, at=T0 + 30))
    pauses.saw(lifecycle_event(LifecycleEvent.SUSPENDED,
                               SuspendedDetail.IOERROR, at=T0 + 40))

    assert pauses.due(T0 + 99) == []
    assert [p.since for p in pauses.due(T0 + 100)] == [T0 + 40]


def test_a_pause_the_listing_shows_counts_from_that_listing(pauses):
    pauses.listed(UUID, NAME, T0, 'vdb: no space left')

    assert pauses.due(T0 + 59) == []
    [due] = pauses.due(T0 + 60)
    assert 'vdb: no space left' in due.reason(T0 + 60)


def test_a_known_pause_is_not_restarted_by_a_later_listing(pauses):
    pauses.saw(IO_PAUSE)
    pauses.listed(UUID, NAME, T0 + 50, '')

    assert len(pauses.due(T0 + 60)) == 1


def test_a_listing_that_shows_the_guest_running_ends_the_pause(pauses):
    pauses.saw(IO_PAUSE)
    pauses.listed(UUID, NAME, T0 + 10, None)

    assert pauses.due(T0 + 60) == []


def test_domains_no_longer_listed_are_forgotten(pauses):
    pauses.saw(IO_PAUSE)
    pauses.keep_only(set())

    assert pauses.due(T0 + 60) == []


def test_the_options_default_to_a_minute_and_only_notifying():
    from oslo_config import cfg
    conf = cfg.ConfigOpts()
    io_error_pauses.register_opts(conf)
    conf([])

    pauses = io_error_pauses.IOErrorPauses.from_conf(conf)

    assert (pauses.grace, pauses.action) == (60, 'none')
