"""Every option of the daemon against every kind of bad value.

The matrix is built from the registered options, so an option added later
is covered without touching this file: each cell either is refused at start
(naming ``[section] option``, without a traceback or a secret) or belongs to
an option declared free text below. Most cells load the configuration in
the test process; a few run the real console script.
"""

import os
import shutil
import subprocess
import sys

import pytest
from oslo_config import types

from monitor import errors
from monitor.conf import checks
from monitor.conf import loading
from monitor.conf import opts

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
SCRIPT = shutil.which('guest-health-monitor',
                      path=os.path.dirname(sys.executable))
COMMAND = [SCRIPT] if SCRIPT else [sys.executable, '-m', 'monitor.cmd.launcher']

PASSWORD = 'ks-pw-matrix-5521'
URL_PASSWORD = 'url-pw-matrix-8830'
SECRETS = (PASSWORD, URL_PASSWORD)

BAD_VALUES = {
    'nan': 'nan',
    'inf': 'inf',
    'negative': '-1',
    'huge-float': '1e300',
    'huge-int': str(2 ** 63),
    'empty': '',
    'wrong-type': 'abc',
}

# Options whose every non-empty text is a valid value: names, catalog
# filters, a regular expression, and the authentication plugin's identity
# fields. For them only the empty value is judged.
FREE_TEXT = {
    ('DEFAULT', 'host'),
    ('monitor', 'agent_channel_name'),
    ('monitor', 'agent_channel_path_regex'),
    ('notifier', 'service_type'),
    ('notifier', 'service_name'),
    ('notifier', 'region_name'),
    ('notifier', 'system_scope'),
    ('notifier', 'domain_id'),
    ('notifier', 'domain_name'),
    ('notifier', 'project_id'),
    ('notifier', 'project_name'),
    ('notifier', 'project_domain_id'),
    ('notifier', 'project_domain_name'),
    ('notifier', 'trust_id'),
    ('notifier', 'default_domain_id'),
    ('notifier', 'default_domain_name'),
    ('notifier', 'user_id'),
    ('notifier', 'username'),
    ('notifier', 'user_domain_id'),
    ('notifier', 'user_domain_name'),
    ('notifier', 'password'),
    ('alertmanager', 'username'),
    ('alertmanager', 'bearer_token'),
    # oslo.log's format strings: any text is a format.
    ('DEFAULT', 'log_date_format'),
    ('DEFAULT', 'logging_context_format_string'),
    ('DEFAULT', 'logging_default_format_string'),
    ('DEFAULT', 'logging_debug_format_suffix'),
    ('DEFAULT', 'logging_exception_prefix'),
    ('DEFAULT', 'logging_user_identity_format'),
    ('DEFAULT', 'instance_format'),
    ('DEFAULT', 'instance_uuid_format'),
}

# Unset is a valid choice for these even though they are empty: the
# plugin then finds the engine in the catalog, TLS uses the system's
# defaults, logs go to stderr.
BASE = {
    'DEFAULT': {'host': 'compute-1'},
    'libvirt': {'connection_uri': 'qemu:///system'},
    'notifier': {'endpoint': 'http://engine:%s@127.0.0.1:9/v1' % URL_PASSWORD,
                 'auth_type': 'password',
                 'auth_url': 'http://monitor:%s@127.0.0.1:9/identity'
                             % URL_PASSWORD,
                 'username': 'monitor',
                 'password': PASSWORD,
                 'project_name': 'service',
                 'user_domain_name': 'Default',
                 'project_domain_name': 'Default'},
}


def daemon_options():
    """(section, Opt) of every option the daemon registers or lists, its
    libraries' (oslo.log) included (the password plugin's options are
    registered when the plugin loads)."""
    for group, group_opts in opts.all_opts():
        section = getattr(group, 'name', group)
        for opt in group_opts:
            yield section, opt


def is_accepted(section, opt, value):
    group = None if section == 'DEFAULT' else section
    if value == '' and (group, opt.dest) in checks.EMPTY_ALLOWED:
        return True
    if (section, opt.dest) in FREE_TEXT:
        return value != '' or opt.default is None
    # Empty means unset for an option without a default; a URL option
    # must still be a URL, a choice one of the choices, and the plugin
    # needs its auth_url.
    return (value == '' and opt.default is None
            and not isinstance(opt.type, types.URI)
            and not getattr(opt.type, 'choices', None)
            and opt.dest != 'auth_url')


def cells():
    for section, opt in daemon_options():
        for label, value in BAD_VALUES.items():
            yield pytest.param(section, opt, value,
                               id='%s.%s-%s' % (section, opt.dest, label))


def write_conf(directory, section, option, value):
    sections = {name: dict(values) for name, values in BASE.items()}
    sections['DEFAULT']['state_path'] = str(directory / 'state')
    sections.setdefault(section, {})[option] = value
    lines = []
    for name, values in sections.items():
        lines.append('[%s]' % name)
        lines.extend('%s = %s' % item for item in values.items())
    path = directory / 'ghm.conf'
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def test_the_base_configuration_is_valid(tmp_path):
    path = write_conf(tmp_path, 'monitor', 'interval', '10')
    loading.load(['--config-file', path], default_config_files=[])


def test_every_numeric_option_has_bounds():
    unbounded = []
    for section, opt in daemon_options():
        if isinstance(opt.type, (types.Integer, types.Float)):
            group = None if section == 'DEFAULT' else section
            bounded = (opt.type.min is not None and opt.type.max is not None
                       ) or (group, opt.dest) in checks.FOREIGN_BOUNDS
            if not bounded:
                unbounded.append('[%s] %s' % (section, opt.dest))
    assert unbounded == []


@pytest.mark.parametrize('section, opt, value', cells())
def test_a_bad_value_is_refused_and_named(tmp_path, capsys, section, opt,
                                          value):
    path = write_conf(tmp_path, section, opt.dest, value)
    error = None
    try:
        loading.load(['--config-file', path], default_config_files=[])
    except errors.ConfigError as exc:
        error = exc

    captured = capsys.readouterr()
    output = captured.out + captured.err
    if is_accepted(section, opt, value):
        assert error is None, str(error)
        return
    assert error is not None, '%s = %r was accepted' % (opt.dest, value)
    text = str(error)
    assert '[%s] %s' % (section, opt.dest) in text
    output += text
    assert 'Traceback' not in output
    for secret in SECRETS:
        assert secret not in output
    if opt.secret and value:
        assert value not in text


@pytest.mark.parametrize('section, option, value', [
    ('monitor', 'interval', 'nan'),
    ('monitor', 'ping_timeout', str(2 ** 31)),
    ('libvirt', 'keepalive_interval', str(2 ** 31)),
    ('monitor', 'max_concurrent_pings', '3000'),
    ('outbox', 'retry_max_delay', 'nan'),
    ('notifier', 'request_timeout', 'inf'),
])
def test_the_console_script_refuses_it_in_one_line(tmp_path, section,
                                                   option, value):
    path = write_conf(tmp_path, section, option, value)
    proc = subprocess.run(COMMAND + ['--config-file', path], cwd=REPO,
                          capture_output=True, text=True, timeout=30)

    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert proc.stderr.startswith(
        'guest-health-monitor: invalid configuration: [%s] %s: '
        % (section, option))
    assert proc.stderr.count('\n') == 1, output
    assert 'Traceback' not in output
    for secret in SECRETS:
        assert secret not in output
