"""The running build's version: one answer for ``--version``, the log and
the ``build_info`` metric.

A release is a git tag ``X.Y.Z`` and its version is ``X.Y.Z``. Any other
commit is ``X.Y.Z.devN+gSHA``: pbr's development version (the next
release, N commits after the last tag) with the commit's short hash, so
two builds of different commits never look alike.

Where it is read from:

* a git checkout (the source tree, ``pip install -e``, devstack's
  ``setup_develop``): from git, at run time. The metadata an editable
  install wrote is frozen at install time and would name every later
  commit after the one that was installed.
* anywhere else (a wheel): from the installed metadata, the commit hash
  from the ``pbr.json`` that pbr wrote into it at build time.
"""

import functools
import json
import os
import pathlib
import subprocess
import sys
from importlib import metadata

DISTRIBUTION = 'guest-health-monitor'
UNKNOWN = 'unknown'

# The source tree holding this package, when it is a checkout.
SOURCE_ROOT = pathlib.Path(__file__).resolve().parents[1]

# Asking git takes milliseconds; a bound keeps a hung file system from
# holding up a start or --version.
GIT_TIMEOUT = 10

# pbr's own reckoning from git (tags, distance, semver hints in commit
# messages), run in a child so that it is bounded; pbr's git calls are not.
_PBR_FROM_GIT = (
    'import pbr.packaging, sys\n'
    'sys.stdout.write(pbr.packaging.get_version(%r))\n' % DISTRIBUTION)


@functools.lru_cache(maxsize=1)
def version_string():
    """This build's version, or 'unknown' when it cannot be told."""
    return from_checkout(SOURCE_ROOT) or from_metadata() or UNKNOWN


def from_checkout(root):
    """The version of the checkout at ``root``, or None if it is not one
    git can read (no ``.git``, no git, a repository git refuses)."""
    root = pathlib.Path(root)
    if not ((root / '.git').exists() and (root / 'setup.cfg').exists()):
        return None
    sha = _run(['git', 'rev-parse', '--short', 'HEAD'], root)
    if not sha:
        return None
    version = _run([sys.executable, '-c', _PBR_FROM_GIT], root)
    if not version:
        return None
    is_release = _run(['git', 'tag', '--points-at', 'HEAD'], root)
    return with_commit(version, sha, is_release=bool(is_release)
                       and '.dev' not in version)


def from_metadata():
    """The installed distribution's version, or None if not installed."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
    try:
        built = json.loads(dist.read_text('pbr.json') or '{}')
    except ValueError:
        built = {}
    return with_commit(dist.version, built.get('git_version'),
                       is_release=bool(built.get('is_release')))


def with_commit(version, sha, is_release):
    """``version`` with the commit as a PEP 440 local label, unless it is a
    release (a tag names it) or the commit is not known."""
    if is_release or not sha or '+' in version:
        return version
    return '%s+g%s' % (version, sha)


def _run(argv, cwd):
    env = dict(os.environ)
    # Whatever version a caller forces on a build, not this checkout's.
    env.pop('PBR_VERSION', None)
    env.pop('OSLO_PACKAGE_VERSION', None)
    try:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=GIT_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None
