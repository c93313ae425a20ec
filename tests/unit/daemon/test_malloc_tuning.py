"""The daemon limits glibc's malloc arenas and turns its per-thread cache
off, unless told otherwise, and gives free memory back to the kernel once
a minute."""

import platform
import sys

import pytest

from monitor.daemon import malloc_tuning

GLIBC = platform.libc_ver()[0] == 'glibc'


class FakeGlibc:

    def __init__(self, answer=1):
        self.calls = []
        self.answer = answer

    def mallopt(self, param, value):
        self.calls.append(('mallopt', param, value))
        return self.answer

    def malloc_trim(self, pad):
        self.calls.append(('malloc_trim', pad))
        return 1


def test_arenas_are_limited_to_two():
    libc = FakeGlibc()
    assert malloc_tuning.limit_arenas(environ={}, libc=libc) == 2
    assert libc.calls == [('mallopt', -8, 2)]


def test_an_operator_setting_in_the_environment_wins():
    libc = FakeGlibc()
    assert malloc_tuning.limit_arenas(environ={'MALLOC_ARENA_MAX': '8'},
                                      libc=libc) is None
    assert libc.calls == []


def test_a_c_library_without_the_setting_is_left_alone():
    assert malloc_tuning.limit_arenas(environ={}, libc=None) is None
    assert malloc_tuning.limit_arenas(environ={}, libc=object()) is None


def test_a_refused_setting_is_not_claimed():
    assert malloc_tuning.limit_arenas(
        environ={}, libc=FakeGlibc(answer=0)) is None


def test_free_memory_is_given_back_at_most_once_per_interval():
    now = [100.0]
    libc = FakeGlibc()
    trimmer = malloc_tuning.Trimmer(lambda: now[0], 60.0, libc=libc)
    assert trimmer.maybe_trim() is False
    now[0] += 59.9
    assert trimmer.maybe_trim() is False
    now[0] += 0.1
    assert trimmer.maybe_trim() is True
    assert trimmer.maybe_trim() is False
    now[0] += 60.0
    assert trimmer.maybe_trim() is True
    assert libc.calls == [('malloc_trim', 0), ('malloc_trim', 0)]


def test_nothing_is_trimmed_without_glibc():
    now = [0.0]
    trimmer = malloc_tuning.Trimmer(lambda: now[0], 1.0, libc=None)
    now[0] += 10
    assert trimmer.maybe_trim() is False


@pytest.mark.skipif(not GLIBC, reason='only glibc has arenas to limit')
def test_this_glibc_takes_the_limit_and_trims():
    assert malloc_tuning.limit_arenas(environ={}) == 2
    now = [0.0]
    trimmer = malloc_tuning.Trimmer(lambda: now[0], 1.0)
    now[0] += 1
    assert trimmer.maybe_trim() is True


class FakeExecve:

    def __init__(self, error=None):
        self.calls = []
        self.error = error

    def __call__(self, path, args, environ):
        self.calls.append((path, args, environ))
        if self.error:
            raise self.error


# As Python keeps it: interpreter options first.
ORIG_ARGV = ['/venv/bin/python3', '-X', 'dev',
             '/venv/bin/guest-health-monitor', '--config-file', 'a b.conf']


def restart(orig_argv=ORIG_ARGV, environ=None, libc=None, execve=None,
            script='ghm'):
    return malloc_tuning.restart_without_tcache(
        environ={'PATH': '/bin'} if environ is None else environ,
        libc=FakeGlibc() if libc is None else libc,
        execve=execve, orig_argv=orig_argv, script=script)


def test_the_process_runs_its_command_line_again_with_the_cache_off():
    execve = FakeExecve()
    assert restart(execve=execve) is True
    [(path, args, environ)] = execve.calls
    assert path == sys.executable
    # Interpreter options and arguments with spaces survive as they were.
    assert args == ORIG_ARGV
    assert environ == {'PATH': '/bin',
                       'GLIBC_TUNABLES': 'glibc.malloc.tcache_count=0'}


@pytest.mark.parametrize('value', ['glibc.malloc.arena_max=4', ''])
def test_tunables_in_the_environment_win_and_nothing_restarts(value):
    # The restarted process itself finds them set: no second restart.
    execve = FakeExecve()
    assert restart(environ={'GLIBC_TUNABLES': value},
                   execve=execve) is False
    assert execve.calls == []


def test_nothing_restarts_without_glibc():
    execve = FakeExecve()
    assert malloc_tuning.restart_without_tcache(
        environ={}, libc=None, execve=execve, orig_argv=ORIG_ARGV,
        script='ghm') is False
    assert execve.calls == []


@pytest.mark.parametrize('script', ['', '-'])
def test_a_script_read_from_standard_input_is_not_run_again(script):
    execve = FakeExecve()
    assert restart(execve=execve, script=script) is False
    assert execve.calls == []


def test_an_empty_command_line_leaves_the_process_as_is():
    execve = FakeExecve()
    assert restart([], execve=execve) is False
    assert execve.calls == []


def test_a_failed_restart_goes_on_without_it():
    execve = FakeExecve(error=PermissionError(13, 'Permission denied'))
    assert restart(execve=execve) is False
    assert len(execve.calls) == 1


def test_the_log_line_says_what_malloc_runs_with():
    assert malloc_tuning.settings(2, {'GLIBC_TUNABLES': 'x=0'}) == (
        'arenas 2, GLIBC_TUNABLES x=0')
    assert malloc_tuning.settings(None, {'MALLOC_ARENA_MAX': '8'}) == (
        'arenas 8, GLIBC_TUNABLES not set')
    assert malloc_tuning.settings(None, {'GLIBC_TUNABLES': ''}) == (
        'arenas not limited, GLIBC_TUNABLES empty')


def test_by_default_the_command_line_is_the_one_this_process_started_with():
    execve = FakeExecve()
    assert malloc_tuning.restart_without_tcache(
        environ={}, libc=FakeGlibc(), execve=execve, script='ghm') is True
    [(_, args, _)] = execve.calls
    assert args == sys.orig_argv
