"""Memory and CPU use of a process and its session, read from /proc.

A monitor is started in a session of its own, so every process it may fork
is counted with it. CPU time is user + system time of all threads
(/proc/PID/stat fields utime and stime); memory is the resident set
(VmRSS in /proc/PID/status).
"""

import os
import typing

_TICKS = os.sysconf('SC_CLK_TCK')


class Usage(typing.NamedTuple):
    cpu_seconds: float
    rss_kib: int


def _stat_fields(pid):
    with open('/proc/%d/stat' % pid) as f:
        text = f.read()
    # The command name (field 2) may hold spaces; fields after it are plain.
    return text[text.rindex(')') + 2:].split()


def _rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0  # a zombie has no VmRSS line


def process_usage(pid):
    fields = _stat_fields(pid)
    # After the name: state is fields[0], utime fields[11], stime fields[12].
    cpu = (int(fields[11]) + int(fields[12])) / _TICKS
    return Usage(cpu, _rss_kib(pid))


def _session_of(pid):
    return int(_stat_fields(pid)[3])


def session_usage(sid):
    """Summed usage of every live process in session ``sid``."""
    cpu = 0.0
    rss = 0
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if _session_of(pid) != sid:
                continue
            usage = process_usage(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited while we looked
        cpu += usage.cpu_seconds
        rss += usage.rss_kib
    return Usage(cpu, rss)
