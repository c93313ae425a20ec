"""The daemon limits glibc's malloc arenas, unless told otherwise, and
gives free memory back to the kernel once a minute."""

import platform

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
