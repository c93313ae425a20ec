"""The bounds of a recovery's libvirt calls, as the configuration gives
them."""

import pytest
from oslo_config import cfg

from monitor.conf import opts
from monitor.daemon import recovery_deadlines


def conf_with(values=None):
    """A configuration with ``values``: {(group, option): value}."""
    conf = cfg.ConfigOpts()
    opts.register_all(conf)
    conf([], default_config_files=[])
    for (group, name), value in (values or {}).items():
        conf.set_override(name, value, group)
    return conf


def test_the_defaults_let_every_call_finish_within_the_whole_step():
    deadlines = recovery_deadlines.Deadlines.from_conf(conf_with())

    assert deadlines == recovery_deadlines.Deadlines(10, 30, 90, 150)
    # The step's own bound only bites when the others are raised.
    assert deadlines.console + deadlines.screenshot + deadlines.action \
        < deadlines.step
    assert deadlines.slot_bound == 150 + recovery_deadlines.SLOT_MARGIN


def test_each_call_has_its_own_option():
    deadlines = recovery_deadlines.Deadlines.from_conf(conf_with({
        ('evidence', 'console_timeout'): 3,
        ('evidence', 'screenshot_timeout'): 4,
        ('recovery', 'action_timeout'): 20,
        ('recovery', 'step_timeout'): 25}))

    assert [deadlines.of(step) for step in recovery_deadlines.STEPS] == \
        [3, 4, 20]
    assert deadlines.step == 25


@pytest.mark.parametrize('group, name, value', [
    ('evidence', 'console_timeout', 0),
    ('evidence', 'screenshot_timeout', 601),
    ('recovery', 'action_timeout', 4),
    ('recovery', 'step_timeout', 9),
])
def test_bounds_outside_their_range_are_refused(group, name, value):
    with pytest.raises(ValueError):
        conf_with({(group, name): value})
