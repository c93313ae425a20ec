"""The wheel carries what a real install needs besides the code: every file
under etc/ (sample config, systemd unit, non-root drop-in, alerting rules,
...), installed under <prefix>/share/guest-health-monitor/."""

import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA_DIR = 'share/guest-health-monitor'


def run(argv, cwd):
    return subprocess.run(argv, cwd=cwd, check=True, capture_output=True,
                          text=True, timeout=300).stdout


def tree_files():
    """The files of the working tree a commit would hold: tracked and new
    ones, without what .gitignore leaves out or what was deleted."""
    listed = run(['git', 'ls-files', '--cached', '--others',
                  '--exclude-standard', '-z'], ROOT).split('\0')
    return sorted(name for name in listed
                  if name and (ROOT / name).is_file())


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    if not (ROOT / '.git').exists():
        pytest.skip('not run from a git checkout: %s has no .git' % ROOT)
    work = tmp_path_factory.mktemp('wheel')
    source = work / 'source'
    # A clone gives pbr the history it takes the version from; the working
    # tree's files over it are what gets built.
    run(['git', 'clone', '--quiet', str(ROOT), str(source)], work)
    for name in run(['git', 'ls-files', '-z'], source).split('\0'):
        if name and not (ROOT / name).exists():
            (source / name).unlink()
    for name in tree_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    run([sys.executable, '-m', 'pip', 'wheel', '--quiet', '--no-deps',
         '--wheel-dir', str(work / 'dist'), str(source)], work)
    (built,) = (work / 'dist').glob('guest_health_monitor-*.whl')
    return built, source


def etc_files(source):
    """What the wheel was built with under etc/, relative to etc/."""
    return {str(path.relative_to(source / 'etc'))
            for path in (source / 'etc').rglob('*') if path.is_file()}


def test_the_wheel_ships_every_file_under_etc(wheel):
    built, source = wheel
    with zipfile.ZipFile(built) as archive:
        shipped = {name.split('.data/data/' + DATA_DIR + '/', 1)[1]
                   for name in archive.namelist()
                   if '.data/data/' + DATA_DIR + '/' in name}

    assert {'guest-health-monitor.conf.sample',
            'guest-health-monitor.service',
            'guest-health-monitor-nonroot.conf'} <= shipped
    assert shipped == etc_files(source)


def test_installed_they_land_under_the_prefix_share_directory(wheel, tmp_path):
    built, source = wheel
    # A virtualenv of its own: `pip install --prefix` would first uninstall
    # the package from the environment running the tests.
    prefix = tmp_path / 'venv'
    run([sys.executable, '-m', 'venv', '--without-pip', str(prefix)],
        tmp_path)
    run([sys.executable, '-m', 'pip', '--python', str(prefix / 'bin' /
                                                       'python'),
         'install', '--quiet', '--no-deps', '--no-compile', str(built)],
        tmp_path)

    for name in etc_files(source):
        installed = prefix / DATA_DIR / name
        assert installed.read_bytes() == \
            (source / 'etc' / name).read_bytes()
