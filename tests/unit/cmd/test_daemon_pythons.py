"""The daemon starts and stops on every Python version setup.cfg declares.

For each declared version, the console script of a virtualenv of that
version (the main one, of the lowest version, or .venv-py3N that the
Makefile builds) starts against libvirt's test driver, connects, and
exits 0 on SIGTERM. `make test` builds the highest version's virtualenv;
`make pythons` builds them all. In CI a declared version that `make test`
covers must be there; elsewhere a missing one is skipped, saying why.
"""

import configparser
import glob
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from tests.unit.cmd.test_daemon import terminate
from tests.unit.cmd.test_daemon import wait_for
from tests.unit.cmd.test_daemon import write_conf

REPO = pathlib.Path(__file__).resolve().parents[3]
PYENV_ROOT = pathlib.Path(os.environ.get('PYENV_ROOT',
                                         os.path.expanduser('~/.pyenv')))
_CLASSIFIER = re.compile(r'Programming Language :: Python :: (3\.\d+)$')


def _setup_cfg():
    parser = configparser.ConfigParser()
    parser.read(REPO / 'setup.cfg')
    return parser['metadata']


def declared_versions():
    """The versions of the classifiers, lowest first."""
    found = (_CLASSIFIER.match(line.strip())
             for line in _setup_cfg()['classifier'].splitlines())
    return sorted((m.group(1) for m in found if m),
                  key=lambda v: tuple(map(int, v.split('.'))))


VERSIONS = declared_versions()


def interpreter(version):
    """An installed interpreter of ``version``, as the Makefile finds it."""
    found = sorted(glob.glob(str(PYENV_ROOT / 'versions' / (version + '.*')
                                 / 'bin' / 'python')))
    return found[0] if found else shutil.which('python' + version)


def venv_version(venv):
    try:
        text = (venv / 'pyvenv.cfg').read_text()
    except OSError:
        return None
    match = re.search(r'^version(?:_info)?\s*=\s*(\d+\.\d+)', text, re.M)
    return match and match.group(1)


def console_script(version):
    """The daemon's console script in a virtualenv of ``version``."""
    for venv in (REPO / ('.venv-py' + version.replace('.', '')),
                 REPO / '.venv'):
        script = venv / 'bin' / 'guest-health-monitor'
        if venv_version(venv) == version and script.exists():
            return script
    return None


def test_python_requires_is_the_lowest_declared_version():
    assert VERSIONS, 'setup.cfg declares no Python 3.N classifier'
    assert _setup_cfg()['python_requires'].strip() == '>=' + VERSIONS[0]


@pytest.mark.parametrize('version', VERSIONS)
def test_the_daemon_starts_and_stops_on_each_declared_python(tmp_path,
                                                             version):
    script = console_script(version)
    if script is None:
        covered = version in (VERSIONS[0], VERSIONS[-1])
        if interpreter(version) is None:
            why = 'Python %s is declared but not installed' % version
        else:
            why = ('no virtualenv of Python %s (make pythons builds one '
                   'for each declared version)' % version)
        if os.environ.get('CI') and (covered or 'not installed' in why):
            pytest.fail(why)
        pytest.skip(why)
    conf = write_conf(tmp_path, libvirt={'connection_uri': 'test:///default'})
    log = tmp_path / 'stderr.log'
    with open(log, 'w') as stderr:
        proc = subprocess.Popen([str(script), '--config-file', conf],
                                cwd=tmp_path, stdout=subprocess.DEVNULL,
                                stderr=stderr)
    try:
        wait_for(log, 'Connected to libvirt at test:///default')
        status = terminate(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    text = log.read_text()
    assert status == 0, text
    assert 'Received SIGTERM; stopping' in text
    assert text.rstrip().endswith('guest-health-monitor stopped'), text
    assert 'Traceback' not in text
