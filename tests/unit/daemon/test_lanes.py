"""The ping lanes: how the slots are shared, and waiting for a lane."""

from monitor import concurrency
from monitor.daemon import lanes


def direct(func, *args):
    return func(*args)


def test_confirmations_may_take_every_slot_but_the_answering_reserve_and_the_silent_lane():
    assert lanes.lane_sizes(50) == (10, 35, 5)
    assert lanes.lane_sizes(40) == (8, 28, 4)
    assert lanes.lane_sizes(5) == (1, 3, 1)
    assert lanes.lane_sizes(2) == (1, 1, 0)
    assert lanes.lane_sizes(1) == (0, 1, 0)


def test_three_suspects_are_confirmed_at_once_with_the_default_five_slots():
    released = concurrency.Event()
    in_flight = []

    def confirm(n):
        in_flight.append(n)
        released.wait()
        return n

    group = lanes.Lanes(5, lambda *ended: None, native=False, execute=direct)
    for n in range(3):
        group.start(group.confirming, confirm, (n,), n)
    concurrency.sleep(0.01)

    assert sorted(in_flight) == [0, 1, 2]
    released.send()
    assert group.confirming.wait_idle(5)


def test_with_one_slot_for_domains_that_missed_the_silent_lane_is_the_confirming_one():
    two = lanes.Lanes(2, lambda *ended: None, native=False, execute=direct)
    assert two.silent is two.confirming
    five = lanes.Lanes(5, lambda *ended: None, native=False, execute=direct)
    assert five.silent is not five.confirming


def test_every_ended_call_is_handed_over_with_its_tag_and_the_lane_goes_idle():
    ended = []
    released = concurrency.Event()

    def ping(n):
        released.wait()
        if n == 2:
            raise TypeError('bad argument')
        return n * 10

    group = lanes.Lanes(5, lambda *outcome: ended.append(outcome),
                        native=False, execute=direct)
    for n in (1, 2):
        group.start(group.answering, ping, (n,), 'tag-%d' % n)

    assert not group.answering.wait_idle(0.01), 'idle before the pings end'
    released.send()
    assert group.answering.wait_idle(5)
    by_tag = {tag: (ok, value) for tag, ok, value in ended}
    assert by_tag['tag-1'] == (True, 10)
    assert by_tag['tag-2'][0] is False
    assert isinstance(by_tag['tag-2'][1], TypeError)
