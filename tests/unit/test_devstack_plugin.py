"""The devstack plugin and the systemd unit.

devstack/plugin.sh runs under tests/unit/devstack_harness/run_plugin.sh, which
sources it the way devstack does (traced, errexit, nounset) with stand-ins for
the devstack functions it calls. Config files and directories land in a
temporary tree; installs and service starts are recorded in a call log.
"""

import configparser
import os
import pathlib
import pwd
import re
import shlex
import socket
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
HARNESS = REPO / 'tests' / 'unit' / 'devstack_harness' / 'run_plugin.sh'
DEVSTACK_FUNCTIONS = (REPO / 'tests' / 'unit' / 'devstack_harness'
                      / 'devstack_functions.sh')
UNIT_FILE = REPO / 'etc' / 'guest-health-monitor.service'
NONROOT_DROP_IN = REPO / 'etc' / 'guest-health-monitor-nonroot.conf'
STACK_USER = pwd.getpwuid(os.getuid()).pw_name
INTROSPECTIVE = 'masakari-introspectiveinstancemonitor'
# What the harness records about devstack's own state, not the plugin's
# actions.
BOOKKEEPING = ('define_plugin', 'enabled_services')

SERVICE_PASSWORD = 'svc-Pw-7f3a9c'
STACK = ['stack:install', 'stack:post-config', 'stack:extra']


class Devstack:
    """One devstack host: its variables, its files and its call log."""

    def __init__(self, root):
        self.root = root
        self.bin_dir = root / 'venv' / 'bin'
        self.data_dir = root / 'data'
        self.conf_dir = root / 'etc' / 'guest-health-monitor'
        self.conf = self.conf_dir / 'guest-health-monitor.conf'
        self.state_path = self.data_dir / 'guest-health-monitor'
        self.nova_cpu_conf = root / 'nova-cpu.conf'
        self.log = root / 'calls.log'
        self.data_dir.mkdir()
        self.env = {
            'PATH': os.environ['PATH'],
            'HOME': str(root),
            'HARNESS_LOG': str(self.log),
            'HARNESS_BIN_DIR': str(self.bin_dir),
            'DEST': str(root),
            'DATA_DIR': str(self.data_dir),
            'STACK_USER': STACK_USER,
            'ENABLED_SERVICES': 'key,n-api,n-cond,n-cpu,guest-health-monitor',
            'SERVICE_PASSWORD': SERVICE_PASSWORD,
            'SERVICE_PROJECT_NAME': 'service',
            'SERVICE_DOMAIN_NAME': 'Default',
            'KEYSTONE_SERVICE_URI': 'http://192.0.2.10/identity',
            'REGION_NAME': 'RegionTwo',
            'NOVA_CPU_CONF': str(self.nova_cpu_conf),
            'SSL_BUNDLE_FILE': str(root / 'ca-bundle.pem'),
            'GHM_CONF_DIR': str(self.conf_dir),
        }

    def run(self, *steps, check=True):
        result = subprocess.run(
            ['bash', str(HARNESS), *steps], env=self.env,
            capture_output=True, text=True, timeout=60)
        if check:
            assert result.returncode == 0, result.stderr
        return result

    def calls(self, name=None):
        if not self.log.exists():
            return []
        rows = [line.split('\t') for line in self.log.read_text().splitlines()]
        if name is None:
            return [row for row in rows if row[0] not in BOOKKEEPING]
        return [row for row in rows if row[0] == name]

    def enabled_services(self):
        """devstack's ENABLED_SERVICES after the last run."""
        return self.calls('enabled_services')[-1][1].split(',')

    def other_plugin_settings(self, order, text):
        """Another plugin's settings, read before or after this one's."""
        path = self.root / f'other-settings-{order}'
        path.write_text(text)
        self.env[f'HARNESS_SETTINGS_{order.upper()}'] = str(path)

    def config(self):
        # oslo.config reads [DEFAULT] as a section of its own, not as
        # defaults for every other section.
        parser = configparser.ConfigParser(
            interpolation=None, default_section='__none__')
        with open(self.conf) as f:
            parser.read_file(f)
        return parser


@pytest.fixture
def devstack(tmp_path):
    return Devstack(tmp_path)


def test_install_develops_the_package_from_the_plugin_checkout(devstack):
    devstack.run('stack:install')

    assert devstack.calls('setup_develop') == [['setup_develop', str(REPO)]]


def test_extra_runs_the_daemon_as_the_stack_user_in_libvirts_group(
        devstack):
    # Like nova-compute: devstack's LIBVIRT_GROUP owns libvirt's socket.
    devstack.env['LIBVIRT_GROUP'] = 'libvirt-qemu-rw'

    devstack.run(*STACK)

    assert devstack.calls('run_process') == [[
        'run_process', 'guest-health-monitor',
        f'{devstack.bin_dir}/guest-health-monitor'
        f' --config-file {devstack.conf}',
        'libvirt-qemu-rw', STACK_USER]]


def test_the_libvirt_group_defaults_to_libvirt(devstack):
    devstack.run(*STACK)

    [call] = devstack.calls('run_process')
    assert call[3:] == ['libvirt', STACK_USER]


def test_state_path_belongs_to_the_stack_user(devstack):
    devstack.run(*STACK)

    sudo = devstack.calls('sudo')
    assert ['sudo', 'install', '-d', '-o', STACK_USER, '-m', '0750',
            str(devstack.state_path)] in sudo
    # Files an earlier run as root left behind become the stack user's.
    assert ['sudo', 'chown', '-R', STACK_USER,
            str(devstack.state_path)] in sudo


@pytest.mark.parametrize('level', ['True', 'False'])
def test_debug_follows_devstacks_log_level(devstack, level):
    devstack.env['ENABLE_DEBUG_LOG_LEVEL'] = level

    devstack.run(*STACK)

    assert devstack.config()['DEFAULT']['debug'] == level


def test_debug_is_on_when_devstack_does_not_say(devstack):
    # stackrc defaults ENABLE_DEBUG_LOG_LEVEL to True.
    devstack.run(*STACK)

    assert devstack.config()['DEFAULT']['debug'] == 'True'


def test_settings_define_the_plugin(devstack):
    devstack.run('stack:install')

    assert devstack.calls('define_plugin') == [
        ['define_plugin', 'guest-health-monitor']]


def test_masakaris_introspective_monitor_is_disabled(devstack):
    devstack.env['ENABLED_SERVICES'] += f',{INTROSPECTIVE}'

    devstack.run(*STACK)

    assert INTROSPECTIVE not in devstack.enabled_services()
    assert 'guest-health-monitor' in devstack.enabled_services()


@pytest.mark.parametrize('order', ['before', 'after'])
def test_masakaris_settings_cannot_enable_it_again(devstack, order):
    # Masakari's devstack settings enable its monitors; devstack reads the
    # plugins' settings in enable_plugin order.
    devstack.other_plugin_settings(
        order, f'enable_service masakari-monitors {INTROSPECTIVE}\n')

    devstack.run(*STACK)

    assert INTROSPECTIVE not in devstack.enabled_services()
    assert 'masakari-monitors' in devstack.enabled_services()


def test_introspective_monitor_enabled_behind_devstacks_back_stops_the_stack(
        devstack):
    devstack.other_plugin_settings(
        'after', f'ENABLED_SERVICES+=,{INTROSPECTIVE}\n')

    result = devstack.run('stack:install', check=False)

    assert result.returncode != 0
    assert INTROSPECTIVE in result.stderr
    assert 'notify twice' in result.stderr
    assert devstack.calls('setup_develop') == []


def test_introspective_monitor_is_left_alone_without_this_service(devstack):
    devstack.env['ENABLED_SERVICES'] = f'key,n-cpu,{INTROSPECTIVE}'

    devstack.run(*STACK)

    assert INTROSPECTIVE in devstack.enabled_services()


def test_host_is_the_one_nova_compute_registers_with(devstack):
    devstack.nova_cpu_conf.write_text('[DEFAULT]\nhost = compute-7\n')

    devstack.run(*STACK)

    assert devstack.config()['DEFAULT']['host'] == 'compute-7'


def test_host_falls_back_to_the_system_host_name_like_nova(devstack):
    devstack.run(*STACK)

    assert devstack.config()['DEFAULT']['host'] == socket.gethostname()


def test_ghm_host_overrides_the_nova_compute_host(devstack):
    devstack.nova_cpu_conf.write_text('[DEFAULT]\nhost = compute-7\n')
    devstack.env['GHM_HOST'] = 'compute-7.example.org'

    devstack.run(*STACK)

    assert devstack.config()['DEFAULT']['host'] == 'compute-7.example.org'


def test_state_and_sqlite_cache_live_under_data_dir(devstack):
    devstack.run(*STACK)

    conf = devstack.config()
    assert conf['DEFAULT']['state_path'] == str(devstack.state_path)
    assert devstack.state_path.is_dir()
    assert conf['cache']['backend'] == 'guest_health_monitor.sqlite'
    kind, _, filename = conf['cache']['backend_argument'].partition(':')
    assert kind == 'filename'
    assert pathlib.Path(filename).parent == devstack.state_path


def test_libvirt_uri_is_the_system_qemu_one_nova_uses(devstack):
    devstack.run(*STACK)

    assert devstack.config()['libvirt']['connection_uri'] == 'qemu:///system'


def test_monitor_defaults_are_written(devstack):
    devstack.run(*STACK)

    monitor = devstack.config()['monitor']
    assert (monitor['interval'], monitor['ping_timeout'],
            monitor['failure_threshold']) == ('10', '2', '3')


def test_monitor_settings_can_be_overridden_from_local_conf(devstack):
    devstack.env.update(GHM_INTERVAL='4', GHM_PING_TIMEOUT='1',
                        GHM_FAILURE_THRESHOLD='5')

    devstack.run(*STACK)

    monitor = devstack.config()['monitor']
    assert (monitor['interval'], monitor['ping_timeout'],
            monitor['failure_threshold']) == ('4', '1', '5')


def test_notifier_authenticates_as_the_masakari_service_user(devstack):
    devstack.run(*STACK)

    notifier = devstack.config()['notifier']
    assert dict(notifier) == {
        'auth_type': 'password',
        'auth_url': 'http://192.0.2.10/identity',
        'username': 'masakari',
        'password': SERVICE_PASSWORD,
        'project_name': 'service',
        'user_domain_name': 'Default',
        'project_domain_name': 'Default',
        'region_name': 'RegionTwo',
        'valid_interfaces': 'public',
    }


def test_notifier_credentials_can_be_overridden(devstack):
    devstack.env.update(GHM_OS_USERNAME='ha-monitor',
                        GHM_OS_PASSWORD='own-Pw-51d2',
                        GHM_OS_PROJECT_NAME='ha',
                        GHM_OS_DOMAIN_NAME='Ops',
                        GHM_OS_INTERFACE='internal')

    devstack.run(*STACK)

    notifier = devstack.config()['notifier']
    assert (notifier['username'], notifier['password'],
            notifier['project_name'], notifier['user_domain_name'],
            notifier['project_domain_name'],
            notifier['valid_interfaces']) == (
        'ha-monitor', 'own-Pw-51d2', 'ha', 'Ops', 'Ops', 'internal')


def test_endpoint_override_is_written_only_when_given(devstack):
    devstack.run(*STACK)
    assert 'endpoint_override' not in devstack.config()['notifier']

    devstack.env['GHM_MASAKARI_ENDPOINT'] = 'http://192.0.2.10/instance-ha/v1'
    devstack.run(*STACK)
    assert (devstack.config()['notifier']['endpoint_override']
            == 'http://192.0.2.10/instance-ha/v1')


def test_only_keystoneauths_adapter_option_names_are_written(devstack):
    # endpoint and interface are deprecated aliases in the daemon.
    devstack.env['GHM_MASAKARI_ENDPOINT'] = 'http://192.0.2.10/instance-ha/v1'

    devstack.run(*STACK)

    notifier = devstack.config()['notifier']
    assert 'endpoint' not in notifier
    assert 'interface' not in notifier


def test_tls_proxy_makes_the_notifier_trust_the_devstack_ca(devstack):
    devstack.env['ENABLED_SERVICES'] += ',tls-proxy'

    devstack.run(*STACK)

    assert (devstack.config()['notifier']['cafile']
            == devstack.env['SSL_BUNDLE_FILE'])


def test_restack_rewrites_the_config_from_scratch(devstack):
    devstack.env['GHM_MASAKARI_ENDPOINT'] = 'http://192.0.2.10/instance-ha/v1'
    devstack.run(*STACK)
    del devstack.env['GHM_MASAKARI_ENDPOINT']

    devstack.run(*STACK)

    assert 'endpoint_override' not in devstack.config()['notifier']


def test_config_file_and_dir_are_closed_to_other_users(devstack):
    devstack.run(*STACK)

    assert devstack.conf.stat().st_mode & 0o007 == 0
    assert devstack.conf_dir.stat().st_mode & 0o007 == 0


@pytest.mark.parametrize('password_var', ['SERVICE_PASSWORD', 'GHM_OS_PASSWORD'])
def test_password_stays_out_of_the_traced_output(devstack, password_var):
    password = 'leak-Check-0e41b7'
    devstack.env[password_var] = password

    result = devstack.run(*STACK)

    # The harness traces every command, so this fails if the plugin runs
    # traced while it handles the password.
    assert password in devstack.config()['notifier']['password']
    assert password not in result.stdout
    assert password not in result.stderr
    assert '+ source' in result.stderr


def daemon_options():
    """(section, option) of every option the daemon knows: those it
    publishes for oslo-config-generator and those it registers at start
    (library options such as oslo.log's may be published under their own
    generator namespace)."""
    from oslo_config import cfg

    from monitor.conf import loading
    from monitor.conf import opts
    known = {(getattr(group, 'name', group), opt.dest)
             for group, group_opts in opts.list_opts() for opt in group_opts}
    conf = loading.build_conf()
    for key in conf:
        if isinstance(conf[key], cfg.ConfigOpts.GroupAttr):
            known.update((key, name) for name in conf[key])
        else:
            known.add(('DEFAULT', key))
    return known


def test_every_option_written_is_one_the_daemon_registers(devstack):
    known = daemon_options()
    devstack.env['GHM_MASAKARI_ENDPOINT'] = 'http://192.0.2.10/instance-ha/v1'
    devstack.env['ENABLED_SERVICES'] += ',tls-proxy'

    devstack.run(*STACK)

    conf = devstack.config()
    written = {(section, option)
               for section in conf.sections() for option in conf[section]}
    assert written - known == set()


def test_nothing_is_installed_or_run_on_a_host_without_nova_compute(devstack):
    devstack.env['ENABLED_SERVICES'] = 'key,n-api,n-cond,guest-health-monitor'

    devstack.run(*STACK)

    assert devstack.calls() == []
    assert not devstack.conf_dir.exists()
    assert not devstack.state_path.exists()


def test_nothing_happens_unless_the_service_is_enabled(devstack):
    devstack.env['ENABLED_SERVICES'] = 'key,n-api,n-cond,n-cpu'

    devstack.run(*STACK)

    assert devstack.calls() == []
    assert not devstack.conf_dir.exists()


@pytest.mark.parametrize('variable, value', [
    ('LIBVIRT_TYPE', 'lxc'),
    ('VIRT_DRIVER', 'fake'),
])
def test_a_hypervisor_without_guest_agents_stops_the_stack(
        devstack, variable, value):
    devstack.env[variable] = value

    result = devstack.run('stack:install', check=False)

    assert result.returncode != 0
    assert variable in result.stderr
    assert devstack.calls('setup_develop') == []


@pytest.mark.parametrize('libvirt_type', ['kvm', 'qemu'])
def test_kvm_and_qemu_guests_are_supported(devstack, libvirt_type):
    devstack.env.update(VIRT_DRIVER='libvirt', LIBVIRT_TYPE=libvirt_type)

    devstack.run('stack:install')

    assert len(devstack.calls('setup_develop')) == 1


def test_unstack_stops_the_daemon(devstack):
    devstack.run(*STACK)

    devstack.run('unstack')

    assert devstack.calls('stop_process') == [
        ['stop_process', 'guest-health-monitor']]


def test_clean_removes_config_and_state(devstack):
    devstack.run(*STACK)
    (devstack.state_path / 'domains.sqlite').write_text('state')

    devstack.run('unstack')
    devstack.run('clean')

    assert not devstack.conf_dir.exists()
    assert not devstack.state_path.exists()
    assert devstack.data_dir.exists()


def test_settings_default_to_the_documented_paths(devstack):
    del devstack.env['GHM_CONF_DIR']
    devstack.env['HARNESS_FUNCTIONS'] = str(DEVSTACK_FUNCTIONS)
    result = subprocess.run(
        ['bash', '-c', 'set -o nounset; source "$HARNESS_FUNCTIONS"; '
         'source "$1"; '
         'printf "%s\\n" "$GHM_CONF" "$GHM_STATE_PATH" "$GHM_DIR"',
         'settings', str(REPO / 'devstack' / 'settings')],
        env=devstack.env, capture_output=True, text=True, check=True,
        timeout=60)

    assert result.stdout.splitlines() == [
        '/etc/guest-health-monitor/guest-health-monitor.conf',
        str(devstack.state_path),
        str(REPO),
    ]


def read_unit():
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    with open(UNIT_FILE) as f:
        parser.read_file(f)
    return parser


def test_unit_starts_the_console_script_with_the_default_config():
    argv = shlex.split(read_unit()['Service']['ExecStart'])

    assert os.path.basename(argv[0]) == 'guest-health-monitor'
    assert argv[1:] == [
        '--config-file', '/etc/guest-health-monitor/guest-health-monitor.conf']


def test_unit_runs_the_console_script_of_the_readmes_virtualenv():
    readme = (REPO / 'README.md').read_text()
    venvs = re.findall(r'python3 -m venv (\S+)', readme)
    assert venvs, 'README.md no longer shows the virtualenv install'

    argv = shlex.split(read_unit()['Service']['ExecStart'])

    assert argv[0] == f'{venvs[0]}/bin/guest-health-monitor'


def test_unit_is_a_notify_service_restarted_on_failure_after_libvirtd():
    unit = read_unit()

    assert unit['Service']['Type'] == 'notify'
    assert unit['Service']['Restart'] == 'on-failure'
    assert 'libvirtd.service' in unit['Unit']['After'].split()
    # Ordering only: a libvirtd restart must not stop the monitor.
    assert 'Requires' not in unit['Unit']
    assert 'BindsTo' not in unit['Unit']
    assert unit['Install']['WantedBy'] == 'multi-user.target'


def test_unit_does_not_restart_a_daemon_with_a_bad_config():
    # Exit status 2 is the daemon's "invalid configuration".
    from monitor.cmd import daemon as cmd

    service = read_unit()['Service']

    assert service['RestartPreventExitStatus'].split() == [
        str(cmd.EXIT_CONFIG_ERROR)]


def systemd_seconds(value):
    units = {'ms': 0.001, 's': 1, 'sec': 1, 'min': 60, 'm': 60}
    number, unit = re.fullmatch(r'(\d+)\s*([a-z]*)', value).groups()
    return int(number) * units.get(unit or 's')


def test_unit_watchdog_catches_a_frozen_process_before_a_stuck_loop():
    from monitor.daemon import systemd_notify

    watchdog = systemd_seconds(read_unit()['Service']['WatchdogSec'])

    # Beats every WatchdogSec / 2: a hub held up for seconds (an fsync, a
    # slow libvirt call) must not cost the daemon its life.
    assert watchdog >= 30
    # A process that is frozen altogether cannot stop beating earlier than
    # a stuck loop does at the defaults; it should not be caught later.
    assert watchdog <= systemd_notify.sweep_stall_after(10.0, 2, 30.0)


def test_unit_reload_sends_sighup_to_the_daemon_only():
    argv = shlex.split(read_unit()['Service']['ExecReload'])

    assert os.path.basename(argv[0]) == 'kill'
    assert argv[1:] == ['-HUP', '$MAINPID']


def test_unit_has_a_logs_directory_for_log_dir():
    service = read_unit()['Service']

    assert service['LogsDirectory'] == 'guest-health-monitor'


def test_nonroot_drop_in_runs_as_a_user_in_the_libvirt_group():
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    with open(NONROOT_DROP_IN) as f:
        parser.read_file(f)

    assert parser.sections() == ['Service']
    service = parser['Service']
    assert service['User'] not in ('', 'root')
    assert 'libvirt' in service['SupplementaryGroups'].split()
    # The hardening of the unit stays: a drop-in only adds.
    assert set(service) == {'User', 'Group', 'SupplementaryGroups'}


def test_unit_runs_as_root_with_its_own_state_directory():
    service = read_unit()['Service']

    assert service.get('User', 'root') == 'root'
    assert service['StateDirectory'] == 'guest-health-monitor'


def test_unit_hardening_leaves_the_libvirt_socket_reachable():
    service = read_unit()['Service']

    assert 'AF_UNIX' in service['RestrictAddressFamilies'].split()
    inaccessible = service.get('InaccessiblePaths', '').split()
    assert not any(path.lstrip('-').startswith(('/run', '/var/run'))
                   for path in inaccessible)
    assert service.get('PrivateNetwork', 'no') == 'no'
    assert service.get('IPAddressDeny', '') == ''
