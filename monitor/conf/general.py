"""The daemon's general options, [DEFAULT] ``host`` and ``state_path``,
the names the configuration is found by, and where the daemon's state
lives on disk."""

import glob
import os
import socket

from oslo_config import cfg

from monitor.store import domain_store

# The names oslo.config searches the configuration files by
# (/etc/guest-health-monitor/guest-health-monitor.conf, ...).
PROJECT = 'guest-health-monitor'
PROG = 'guest-health-monitor'

OPTS = [
    cfg.StrOpt(
        'host',
        default=socket.gethostname(),
        sample_default='<hostname>',
        help="""
Name of this compute host as the HA engine knows it. It is sent in every
notification and must match the host name registered in the engine's
failover segment (for Nova hosts, the nova-compute service's host name).

Possible values:

* A host name. Default: this machine's host name.
"""),
    cfg.StrOpt(
        'state_path',
        default='/var/lib/guest-health-monitor',
        help="""
Directory for the daemon's persistent state. It is created if missing (mode
0700) and must be writable. Only one daemon may use it at a time: it holds
an exclusive lock on guest-health-monitor.lock in it, which names its PID.

Possible values:

* An absolute directory path. Default /var/lib/guest-health-monitor.

Related options:

* [cache] backend, [cache] backend_argument: the sqlite store
  (guest_health_monitor.sqlite) defaults to <state_path>/domains.sqlite.
"""),
]


def register_opts(conf):
    conf.register_opts(OPTS)


def list_opts():
    return [('DEFAULT', OPTS)]


def state_files(conf):
    """Paths outside state_path where the daemon keeps state: a dbm or
    sqlite file given by [cache] backend_argument filename, with its
    companion files (dbm's .dat/.dir, sqlite's -wal/-shm)."""
    if conf.cache.backend not in (domain_store.DBM_BACKEND,
                                  domain_store.SQLITE_BACKEND):
        return []
    filename = domain_store.region_arguments(conf).get('filename')
    if not filename:
        return []
    directory = os.path.dirname(os.path.abspath(filename))
    if os.path.realpath(directory) == os.path.realpath(conf.state_path):
        return []
    return sorted(glob.glob(glob.escape(filename) + '*'))
