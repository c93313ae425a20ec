import logging

import pytest
from oslo_config import cfg

from monitor.health import mass_failure

LOGGER = 'monitor.health.mass_failure'


@pytest.fixture
def breaker():
    return mass_failure.MassFailureBreaker(min_domains=3, ratio=0.5)


@pytest.mark.parametrize('monitored,missed,tripped', [
    (10, 0, False),
    (10, 2, False),    # fewer than min_domains
    (4, 2, False),     # below min_domains even at 50 %
    (6, 3, False),     # exactly the ratio is not more than it
    (5, 3, True),      # 3 >= 3 and 60 % > 50 %
    (3, 3, True),
    (100, 40, False),  # many, but a minority
    (100, 51, True),
    (0, 0, False),
])
def test_trips_on_enough_misses_and_more_than_the_ratio(
        breaker, monitored, missed, tripped):
    assert breaker.evaluate(monitored, missed) is tripped
    assert breaker.tripped is tripped


def test_ratio_one_never_trips():
    breaker = mass_failure.MassFailureBreaker(min_domains=1, ratio=1.0)
    assert breaker.evaluate(5, 5) is False


def test_stays_tripped_while_the_condition_holds_and_then_clears(breaker):
    assert breaker.evaluate(5, 4)
    assert breaker.evaluate(5, 5)
    assert not breaker.evaluate(5, 1)
    assert not breaker.tripped


def test_logs_one_error_when_tripping_and_one_line_when_clearing(
        breaker, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    for _sweep in range(4):
        breaker.evaluate(6, 5)
    records = [r for r in caplog.records if r.name == LOGGER]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert '5 of 6' in records[0].getMessage()

    caplog.clear()
    for _sweep in range(4):
        breaker.evaluate(6, 0)
    records = [r for r in caplog.records if r.name == LOGGER]
    assert len(records) == 1
    assert records[0].levelno < logging.ERROR
    assert 'cleared' in records[0].getMessage()


def test_quiet_when_never_tripped(breaker, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    for _sweep in range(3):
        breaker.evaluate(10, 1)
    assert [r for r in caplog.records if r.name == LOGGER] == []


def test_trips_again_after_clearing(breaker, caplog):
    caplog.set_level(logging.ERROR, logger=LOGGER)
    breaker.evaluate(4, 4)
    breaker.evaluate(4, 0)
    breaker.evaluate(4, 4)
    assert len([r for r in caplog.records
                if r.levelno == logging.ERROR]) == 2


def test_from_conf():
    conf = cfg.ConfigOpts()
    mass_failure.register_opts(conf)
    conf([], default_config_files=[])
    breaker = mass_failure.MassFailureBreaker.from_conf(conf)
    assert (breaker.min_domains, breaker.ratio) == (3, 0.5)
    assert breaker.tripped is False


def test_options():
    [(group, opts)] = mass_failure.list_opts()
    assert group == 'monitor'
    by_name = {opt.name: opt for opt in opts}
    assert by_name['mass_failure_min_domains'].default == 3
    assert by_name['mass_failure_ratio'].default == 0.5
