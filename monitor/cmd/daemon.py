"""The ``guest-health-monitor`` console script.

Every start-up problem ends the process with one line and no traceback:
exit status 2 for a configuration the operator must fix (naming
``[section] option``), 1 for anything else that stops the daemon before
it runs.

A stop (SIGTERM, SIGINT) ends the process within ``STOP_BOUND`` seconds
whatever its native threads are doing: status 0 when everything ended,
3 (``EXIT_ABANDONED``) when a libvirt call that never returned was left
behind. Recoveries under way keep their notifications held in the
outbox; the next start sends them as interrupted.
"""

import logging
import os
import signal
import sys
import time

from oslo_config import cfg

from monitor import concurrency
from monitor import errors
from monitor import masking
from monitor import version as build_version
from monitor.conf import general
from monitor.conf import loading
from monitor.conf import log_setup as logs
from monitor.conf import settings_log
from monitor.daemon import gc_tuning
from monitor.daemon import malloc_tuning
from monitor.daemon import systemd_notify
from monitor.store import state_dir

LOG = logging.getLogger('monitor')

EXIT_CONFIG_ERROR = 2
EXIT_START_ERROR = 1
# Stopped, leaving behind native calls that had not returned (a libvirt
# call stuck on a wedged QEMU or libvirtd).
EXIT_ABANDONED = 3

# After the options in --help. argparse reflows it into one paragraph.
EXIT_STATUS_HELP = (
    'Exit status: 0 stopped cleanly (SIGTERM or SIGINT); 1 could not '
    'start (an unusable outbox or cache, a port in use, ...); 2 invalid '
    'configuration or command line, or another daemon uses the same '
    'state_path (systemd does not restart it); 3 stopped, leaving behind '
    'a libvirt call that never returned.')

# Seconds from a stop signal to the end of the process, at most. The green
# threads get what is left once the connection's close is allowed for;
# past the bound a native timer ends the process whatever it is doing.
STOP_BOUND = 10.0
_STOP_MARGIN = 1.0

# The state and the log say which guests failed and when and where the HA
# engine is: nothing the daemon creates is for other users. Files are 0600
# and directories 0700 whatever umask the daemon was started with.
UMASK = 0o077

# Seconds between two looks for a stop signal.
_SIGNAL_POLL = 0.2


class SignalRecorder:
    """A signal handler that records the signal, nothing else.

    A handler runs between two bytecodes of whatever is current in the
    main thread, the eventlet hub included: logging (a green lock) or
    setting a green event there would switch greenlets from inside the
    hub ("Cannot switch to MAINLOOP from MAINLOOP") or wedge it. The main
    green thread polls :attr:`received` instead.
    """

    def __init__(self):
        self.received = []

    def __call__(self, signum, _frame):
        self.received.append(signum)

    def take(self):
        """The signals recorded since the last take, oldest first."""
        taken = []
        while self.received:
            # pop() is atomic: a signal recorded meanwhile is kept.
            taken.append(self.received.pop(0))
        return taken


def _config_error(exc):
    sys.stderr.write('guest-health-monitor: invalid configuration: %s\n'
                     % exc)
    return EXIT_CONFIG_ERROR


def _prepare(argv):
    """Load the configuration, take the state directory, set up logging.

    :raises errors.ConfigError: a configuration problem.
    :raises errors.StateDirInUse: another daemon uses the state directory.
    :raises OSError: the state directory cannot be locked or fixed.
    """
    conf = loading.load(argv)
    # The lock lasts until the process exits, however it exits.
    state_dir.lock(conf.state_path)
    state_dir.restrict_modes(conf.state_path, general.state_files(conf))
    logs.setup(conf)
    return conf


def reload_on_hup(conf, argv, notifier):
    """What SIGHUP asks for; the daemon keeps running whatever happens.

    Reopens the log files (logrotate moved them away), then re-reads the
    configuration files: when they are valid as a whole, the options that
    may change while running (``debug``, ``log_config_append``) take
    effect, and oslo.config warns about changed ones that need a restart;
    when they are not, the running configuration stays and the problem is
    logged naming the option. systemd hears RELOADING=1 before and
    READY=1 after.
    """
    notifier.reloading()
    reopened = logs.reopen_files()
    try:
        # The whole configuration as a start would check it: mutating in
        # place reads only what changed, and a bad value would then break
        # every later read of that option.
        loading.load(argv)
    except errors.ConfigError as exc:
        LOG.error('Not reloading on SIGHUP: invalid configuration: %s; '
                  'keeping the running configuration', exc)
    else:
        try:
            conf.mutate_config_files()
            logs.apply_levels(conf)
        except (cfg.Error, logs.LogConfigError) as exc:
            # The files changed between the check and the reading, or a
            # logging configuration file did not apply.
            LOG.error('Not reloading on SIGHUP: %s; keeping the running '
                      'configuration', masking.mask(str(exc)))
        else:
            LOG.info('Reloaded on SIGHUP: log level %s, %s',
                     logs.level_name(),
                     '%d log file(s) reopened' % len(reopened)
                     if reopened else 'no log file to reopen')
    notifier.ready()


def _help():
    """Print --help with the exit statuses after the options; exits 0.

    loading.load parses the real command line, without an epilog; help
    reads nothing else, so it is printed from the options alone."""
    conf = loading.build_conf()
    conf(args=['--help'], project=general.PROJECT, prog=general.PROG,
         version=build_version.version_string(), default_config_files=[],
         epilog=EXIT_STATUS_HELP)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if '-h' in argv or '--help' in argv:
        _help()
    os.umask(UMASK)
    # Before any native thread starts (malloc_tuning: why).
    arenas = malloc_tuning.limit_arenas()
    # SIGHUP's default action ends the process (status 129, which systemd
    # counts as a clean exit): record it from the very start.
    reloads = SignalRecorder()
    signal.signal(signal.SIGHUP, reloads)
    try:
        conf = _prepare(argv)
    except errors.ConfigError as exc:
        return _config_error(exc)
    except errors.StateDirInUse as exc:
        sys.stderr.write('guest-health-monitor: %s\n' % exc)
        return EXIT_CONFIG_ERROR
    except OSError as exc:
        sys.stderr.write('guest-health-monitor: cannot start: %s\n'
                         % masking.mask(str(exc)))
        return EXIT_START_ERROR

    # Green threads only from here on: the scheduler, the event
    # dispatcher and the delivery worker. libvirt calls run in native
    # threads, libvirt's event loop in its own native thread. The
    # configuration and logging set-up above ran before anything was
    # green; the service is imported once the standard library is
    # patched, as the modules it brings in expect.
    concurrency.monkey_patch()
    from monitor.daemon import service as service_mod
    concurrency.set_native_threads(conf.monitor.max_concurrent_pings + 2)

    LOG.info('guest-health-monitor %s starting on host %s',
             build_version.version_string(), conf.host)
    settings_log.log_effective_settings(conf, LOG)
    LOG.info('malloc: %s', malloc_tuning.settings(arenas))
    settings_log.warn_unknown_options(conf, LOG)
    try:
        service = service_mod.MonitorService(conf)
    except (OSError, ValueError, TypeError, ImportError, cfg.Error,
            errors.ConfigError, errors.OutboxError) as exc:
        # Expected at start (a port in use, an unusable outbox, a backend
        # that fails to build): one line; the stack only when debugging.
        LOG.debug('Start-up failure', exc_info=True)
        LOG.error('Cannot start: %s', masking.mask(str(exc)))
        return EXIT_START_ERROR

    LOG.debug('%d start-up objects left out of garbage collection',
              gc_tuning.freeze_start_up_objects())
    stops = SignalRecorder()
    signal.signal(signal.SIGTERM, stops)
    signal.signal(signal.SIGINT, stops)
    notifier = systemd_notify.SystemdNotifier.from_environ()
    service.start()
    while not stops.received and not service.stop_event.is_set():
        service.stop_event.wait(_SIGNAL_POLL)
        if reloads.take() and not stops.received:
            # Several SIGHUPs since the last look need one reload.
            reload_on_hup(conf, argv, notifier)
    notifier.close()
    if stops.received:
        LOG.info('Received %s; stopping',
                 signal.Signals(stops.received[0]).name)
    return _stop(service, conf)


def _stop(service, conf):
    """Stop ``service`` within STOP_BOUND; the exit status."""
    concurrency.exit_after(
        STOP_BOUND - _STOP_MARGIN / 2, EXIT_ABANDONED,
        'the stop did not end within %.0f s; exiting, abandoning what '
        'still runs' % STOP_BOUND)
    ends_by = time.monotonic() + STOP_BOUND - 2 * _STOP_MARGIN
    service.stop()

    def left(reserve=0.0):
        return ends_by - reserve - time.monotonic()

    # A ping in flight ends within one ping timeout; do not wait longer,
    # and keep the connection's close its share of the bound.
    all_ended = service.wait(grace=min(conf.monitor.ping_timeout,
                                       left(service.close_timeout)))
    service.settle(left(service.close_timeout))
    # The close ends once the pings still using the connection returned.
    service.close(timeout=left())
    abandoned = service.abandoned()
    if abandoned:
        LOG.warning('guest-health-monitor stopped, abandoning %d libvirt '
                    'call(s) that did not return (exit status %d)',
                    abandoned, EXIT_ABANDONED)
        status = EXIT_ABANDONED
    else:
        LOG.info('guest-health-monitor stopped')
        status = 0
    if abandoned or not all_ended:
        # The interpreter's exit would run the green threads still
        # waiting and join eventlet's native threads, one of which may be
        # stuck in libvirt for ever.
        logging.shutdown()
        concurrency.exit_now(status)
    return status


if __name__ == '__main__':
    # As the console script does (monitor.cmd.launcher), at the price of
    # importing this module's dependencies again.
    malloc_tuning.restart_without_tcache()
    sys.exit(main())
