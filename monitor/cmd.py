"""The ``guest-health-monitor`` console script."""

import logging
import signal
import sys

from monitor import config
from monitor import logs

LOG = logging.getLogger('monitor')

EXIT_CONFIG_ERROR = 2

# Seconds between two looks for a stop signal.
_SIGNAL_POLL = 0.2


class StopSignals:
    """The SIGTERM/SIGINT handler: records the signal, nothing else.

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


def _config_error(exc):
    sys.stderr.write('guest-health-monitor: invalid configuration: %s\n'
                     % exc)
    return EXIT_CONFIG_ERROR


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        conf = config.load(argv)
    except config.ConfigError as exc:
        return _config_error(exc)
    logs.setup(conf)

    # Green threads only from here on: the scheduler, the event
    # dispatcher and the delivery worker. libvirt calls run in native
    # threads (tpool), libvirt's event loop in its own native thread.
    import eventlet
    eventlet.monkey_patch()
    from eventlet import tpool
    from keystoneauth1 import exceptions as ks_exc

    from monitor import notifier
    from monitor import outbox
    from monitor import service as service_mod
    tpool.set_num_threads(conf.monitor.max_concurrent_pings + 2)

    LOG.info('guest-health-monitor starting on host %s', conf.host)
    config.log_effective_settings(conf, LOG)
    try:
        service = service_mod.MonitorService(conf)
    except ks_exc.MissingRequiredOptions as exc:
        # Which options an authentication plugin needs is only known once
        # it is loaded.
        return _config_error(config.ConfigError(
            conf.notifier.auth_section or notifier.GROUP,
            ', '.join(opt.dest for opt in exc.options),
            "required by auth_type '%s'" % conf.notifier.auth_type))
    except (OSError, ValueError, outbox.OutboxError) as exc:
        LOG.error('Cannot start: %s', exc)
        return 1

    signals = StopSignals()
    signal.signal(signal.SIGTERM, signals)
    signal.signal(signal.SIGINT, signals)
    service.start()
    while not signals.received and not service.stop_event.is_set():
        service.stop_event.wait(_SIGNAL_POLL)
    if signals.received:
        LOG.info('Received %s; stopping',
                 signal.Signals(signals.received[0]).name)
    service.stop()
    # A ping in flight ends within one ping timeout; do not wait longer.
    service.wait(grace=conf.monitor.ping_timeout)
    service.close()
    LOG.info('guest-health-monitor stopped')
    return 0


if __name__ == '__main__':
    sys.exit(main())
