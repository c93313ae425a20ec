"""The user guide builds, warnings counting as errors, as `tox -e docs` and
`make docs` build it."""

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / 'docs'


def require_sphinx():
    """Fail under CI, skip elsewhere, when the builders are missing."""
    missing = [name for name in ('sphinx', 'myst_parser')
               if importlib.util.find_spec(name) is None]
    if not missing:
        return
    why = '%s not installed (test-requirements.txt)' % ', '.join(missing)
    if os.environ.get('CI'):
        pytest.fail(why, pytrace=False)
    pytest.skip(why)


def test_the_guide_builds_without_a_warning(tmp_path):
    require_sphinx()
    built = subprocess.run(
        [sys.executable, '-m', 'sphinx', '-q', '-W', '--keep-going',
         '-b', 'html', '-d', str(tmp_path / 'doctrees'), str(DOCS),
         str(tmp_path / 'html')],
        capture_output=True, text=True, timeout=300, check=False)

    assert built.returncode == 0, built.stderr
    assert (tmp_path / 'html' / 'index.html').exists()


def test_every_page_is_in_the_table_of_contents():
    index = (DOCS / 'index.md').read_text()
    pages = {path.relative_to(DOCS).with_suffix('').as_posix()
             for path in DOCS.glob('*.md')} - {'index'}
    listed = {line.strip() for line in index.splitlines()}
    assert pages <= listed, sorted(pages - listed)
