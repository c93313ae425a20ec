"""The version tells builds apart: each commit its own, a tag a release."""

import pathlib
import subprocess
import sys

import pytest

from monitor import version

ROOT = pathlib.Path(__file__).resolve().parents[2]

GIT_IDENTITY = ['-c', 'user.name=Test', '-c', 'user.email=test@example.org',
                '-c', 'commit.gpgsign=false', '-c', 'tag.gpgsign=false']


def git(cwd, *args):
    return subprocess.run(['git', *GIT_IDENTITY, *args], cwd=cwd, check=True,
                          capture_output=True, text=True,
                          timeout=60).stdout.strip()


@pytest.fixture
def checkout(tmp_path):
    if not (ROOT / '.git').exists():
        pytest.skip('not run from a git checkout: %s has no .git' % ROOT)
    clone = tmp_path / 'clone'
    git(tmp_path, 'clone', '--quiet', str(ROOT), str(clone))
    return clone


def test_each_commit_of_a_checkout_has_its_own_version(checkout):
    first = version.from_checkout(checkout)
    git(checkout, 'commit', '--quiet', '--allow-empty', '-m', 'Another')
    second = version.from_checkout(checkout)

    assert first != second
    sha = git(checkout, 'rev-parse', '--short', 'HEAD')
    assert second.endswith('+g' + sha)
    assert '.dev' in second


def test_a_tagged_commit_is_the_release_the_tag_names(checkout):
    git(checkout, 'tag', '-a', '7.8.9', '-m', 'Release 7.8.9')
    assert version.from_checkout(checkout) == '7.8.9'

    git(checkout, 'commit', '--quiet', '--allow-empty', '-m', 'After it')
    after = version.from_checkout(checkout)
    assert after.startswith('7.8.10.dev1+g')


def test_a_directory_that_is_not_a_checkout_has_no_checkout_version(tmp_path):
    (tmp_path / 'setup.cfg').write_text('[metadata]\n')
    assert version.from_checkout(tmp_path) is None


class FakeDistribution:
    def __init__(self, version, pbr_json):
        self.version = version
        self._pbr_json = pbr_json

    def read_text(self, name):
        assert name == 'pbr.json'
        return self._pbr_json


@pytest.mark.parametrize('installed, pbr_json, expected', [
    ('0.3.1.dev4', '{"git_version": "1a2b3c4", "is_release": false}',
     '0.3.1.dev4+g1a2b3c4'),
    ('0.3.0', '{"git_version": "9f8e7d6", "is_release": true}', '0.3.0'),
    ('0.3.1.dev4', None, '0.3.1.dev4'),
    ('0.3.1.dev4', 'not json', '0.3.1.dev4'),
])
def test_an_installed_build_names_its_commit_unless_a_release(
        monkeypatch, installed, pbr_json, expected):
    monkeypatch.setattr(version.metadata, 'distribution',
                        lambda name: FakeDistribution(installed, pbr_json))
    assert version.from_metadata() == expected


def test_no_checkout_and_no_metadata_is_unknown(monkeypatch):
    monkeypatch.setattr(version, 'from_checkout', lambda root: None)
    monkeypatch.setattr(version, 'from_metadata', lambda: None)
    version.version_string.cache_clear()
    try:
        assert version.version_string() == 'unknown'
    finally:
        version.version_string.cache_clear()


def test_the_console_script_prints_this_builds_version():
    script = pathlib.Path(sys.executable).parent / 'guest-health-monitor'
    if not script.exists():
        pytest.skip('the package is not installed in %s' % sys.prefix)
    shown = subprocess.run([str(script), '--version'], capture_output=True,
                           text=True, timeout=60, check=True)
    assert (shown.stdout or shown.stderr).strip() == \
        version.version_string()
    assert version.version_string() != version.UNKNOWN
