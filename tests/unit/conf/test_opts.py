import importlib
import os
import sys

import pytest
from oslo_config import cfg
from oslo_config import generator

from monitor.conf import opts


def by_group():
    return {getattr(group, 'name', group): group_opts
            for group, group_opts in opts.list_opts()}


def test_one_entry_per_group():
    names = [getattr(group, 'name', group) for group, _ in opts.list_opts()]
    assert len(names) == len(set(names))
    assert {'DEFAULT', 'libvirt', 'monitor', 'cache', 'notifier',
            'outbox'} <= set(names)


def test_no_option_twice_in_a_group():
    for group, group_opts in by_group().items():
        names = [opt.dest for opt in group_opts]
        assert len(names) == len(set(names)), group


def test_monitor_group_merges_its_modules():
    names = {opt.dest for opt in by_group()['monitor']}
    assert {
        # scheduler
        'interval', 'ping_timeout', 'max_concurrent_pings',
        # health policy
        'failure_threshold', 'discovery_timeout', 'agent_disconnect_grace',
        # mass-failure breaker
        'mass_failure_min_domains', 'mass_failure_ratio',
        # domain XML
        'agent_channel_name', 'agent_channel_path_regex',
        # guest activity (I/O corroboration)
        'corroborate_with_io', 'io_noise_disk_requests',
        'io_noise_sent_packets',
    } <= names


@pytest.mark.parametrize('group,names', [
    ('DEFAULT', {'host', 'state_path'}),
    ('libvirt', {'connection_uri', 'keepalive_interval', 'keepalive_count',
                 'reconnect_initial_delay', 'reconnect_max_delay'}),
    ('cache', {'backend', 'backend_argument', 'expiration_time'}),
    ('notifier', {'endpoint'}),
])
def test_group_holds_its_options(group, names):
    assert names <= {opt.dest for opt in by_group()[group]}


def test_groups_with_several_modules_carry_help():
    for group, _ in opts.list_opts():
        if getattr(group, 'name', group) in ('monitor', 'cache'):
            assert isinstance(group, cfg.OptGroup)
            assert group.help


def test_every_option_has_help():
    for group, group_opts in by_group().items():
        for opt in group_opts:
            assert opt.help and opt.help.strip(), (group, opt.dest)


def test_host_sample_default_is_not_this_machine():
    [host] = [opt for opt in by_group()['DEFAULT'] if opt.dest == 'host']
    assert host.sample_default == '<hostname>'


def test_register_all_makes_every_module_option_readable():
    conf = cfg.ConfigOpts()
    opts.register_all(conf)
    conf([], default_config_files=[])
    assert conf.monitor.failure_threshold == 3
    assert conf.monitor.interval == 10
    assert conf.cache.backend == 'dogpile.cache.memory'
    assert conf.libvirt.connection_uri == 'qemu:///system'
    assert conf.state_path == '/var/lib/guest-health-monitor'


def test_the_generator_entry_point_is_list_opts():
    from importlib import metadata

    points = metadata.entry_points(group='oslo.config.opts')
    [point] = [p for p in points if p.name == 'guest_health_monitor']
    assert point.value == 'monitor.conf.opts:list_opts'
    assert point.load() is opts.list_opts


def test_a_missing_module_is_named(monkeypatch):
    monkeypatch.setattr(opts, 'OPTION_MODULES',
                        opts.OPTION_MODULES + ('monitor.no_such_module',))
    with pytest.raises(ImportError, match='monitor.no_such_module'):
        opts.list_opts()


def test_importing_opts_imports_no_option_module(monkeypatch):
    for name in opts.OPTION_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.delitem(sys.modules, 'monitor.conf.opts')
    importlib.import_module('monitor.conf.opts')
    assert not [name for name in opts.OPTION_MODULES if name in sys.modules]


def test_the_shipped_sample_config_is_up_to_date(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    shipped = os.path.join(root, 'etc', 'guest-health-monitor.conf.sample')
    fresh = tmp_path / 'sample'
    conf = cfg.ConfigOpts()
    generator.register_cli_opts(conf)
    conf(['--config-file',
          os.path.join(root, 'etc', 'oslo-config-generator.conf'),
          '--output-file', str(fresh)], default_config_files=[])
    generator.generate(conf)
    with open(shipped) as f:
        assert fresh.read_text() == f.read(), \
            'etc/guest-health-monitor.conf.sample is stale: run make genconfig'


def test_oslo_log_options_are_read_and_listed_under_their_own_namespace():
    own = {opt.dest for group, group_opts in opts.list_opts()
           for opt in group_opts}
    every = {opt.dest for group, group_opts in opts.all_opts()
             for opt in group_opts}
    # Validated with the daemon's own, listed once in the sample.
    assert {'debug', 'log_file', 'log_dir', 'use_journal', 'use_syslog',
            'log_config_append', 'default_log_levels'} <= every - own
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    with open(os.path.join(root, 'etc', 'oslo-config-generator.conf')) as f:
        assert 'namespace = oslo.log\n' in f.read()
