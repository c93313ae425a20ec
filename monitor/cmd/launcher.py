"""Where the ``guest-health-monitor`` console script starts.

Before the daemon's modules are imported (most of a second), the process
may run itself again with glibc's per-thread malloc cache turned off
(:func:`monitor.daemon.malloc_tuning.restart_without_tcache`): starting
over here costs an interpreter start, not a second import of everything.
"""

import sys

from monitor.daemon import malloc_tuning


def main():
    malloc_tuning.restart_without_tcache()
    from monitor.cmd import daemon
    return daemon.main()


if __name__ == '__main__':
    sys.exit(main())
