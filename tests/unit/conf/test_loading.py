"""Loading the configuration: every option registered, the command line
and the config files parsed, the defaults and the values written."""

from keystoneauth1 import loading as ks_loading

from monitor.conf import loading
from monitor.conf import opts
from tests.unit.conf.load_helpers import ENDPOINT
from tests.unit.conf.load_helpers import load


def test_valid_file_loads_with_defaults(write_conf, state_path):
    conf = load(write_conf())
    assert conf.host == 'compute-1'
    assert conf.state_path == state_path
    assert conf.monitor.failure_threshold == 3
    assert conf.monitor.discovery_timeout == 0
    assert conf.monitor.agent_disconnect_grace == 30
    assert conf.monitor.interval == 10
    assert conf.monitor.agent_channel_name == 'org.qemu.guest_agent.0'
    assert conf.libvirt.connection_uri == 'qemu:///system'
    assert conf.cache.backend == 'dogpile.cache.memory'
    assert conf.notifier.endpoint == ENDPOINT


def test_values_from_the_file_are_used(write_conf):
    conf = load(write_conf(
        monitor={'failure_threshold': 5, 'mass_failure_ratio': 0.25,
                 'agent_channel_path_regex': r'^/var/lib/libvirt/qemu/'},
        cache={'backend': 'guest_health_monitor.sqlite',
               'backend_argument': ['filename:/tmp/x.sqlite']}))
    assert conf.monitor.failure_threshold == 5
    assert conf.monitor.mass_failure_ratio == 0.25
    assert conf.cache.backend_argument == ['filename:/tmp/x.sqlite']


def test_default_config_file_is_found_by_project_name(
        tmp_path, monkeypatch, write_conf):
    # oslo.config searches ~/.guest-health-monitor/ before /etc/...
    home = tmp_path / 'home'
    (home / '.guest-health-monitor').mkdir(parents=True)
    source = write_conf()
    target = home / '.guest-health-monitor' / 'guest-health-monitor.conf'
    target.write_text(open(source).read())
    monkeypatch.setenv('HOME', str(home))
    conf = loading.load([])
    assert str(target) in conf.config_file


def test_build_conf_registers_every_listed_option():
    conf = loading.build_conf()
    unregistered = set()
    for group, group_opts in opts.list_opts():
        name = getattr(group, 'name', group)
        registered = conf if name == 'DEFAULT' else conf[name]
        unregistered |= {(name, opt.dest) for opt in group_opts
                         if opt.dest not in registered}
    # keystoneauth registers its plugin's options when it loads the plugin
    # named by auth_type; they are listed for the sample only.
    plugin_opts = {('notifier', opt.dest) for opt in
                   ks_loading.get_auth_plugin_conf_options('password')}
    assert unregistered <= plugin_opts


def test_build_conf_gives_fresh_objects():
    assert loading.build_conf() is not loading.build_conf()


def test_the_libvirt_integer_limits_are_respected():
    conf = loading.build_conf()
    for group, name in (('libvirt', 'keepalive_interval'),
                        ('monitor', 'ping_timeout')):
        opt = conf._get_opt_info(name, group)['opt']
        assert opt.type.max < 2 ** 31, name
