"""Operator logging: one line per event, to stderr or a file."""

import logging
import logging.handlers

from oslo_config import cfg

LOG_OPTS = [
    cfg.BoolOpt('debug',
                default=False,
                help='Log at debug level: every sweep with its duration, '
                     'every missed ping. Default false.'),
    cfg.StrOpt('log_file',
               help='Write the log to this file instead of standard error. '
                    'The file is reopened when it is moved away (logrotate '
                    'friendly). Default: unset (standard error).'),
]

FORMAT = '%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s'


def list_opts():
    return [('DEFAULT', LOG_OPTS)]


def register_opts(conf):
    conf.register_opts(LOG_OPTS)


def setup(conf):
    if conf.log_file:
        handler = logging.handlers.WatchedFileHandler(conf.log_file)
    else:
        handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if conf.debug else logging.INFO)
    # Library chatter (HTTP connection pools, keystoneauth) is noise for
    # operators unless they ask for debug.
    for noisy in ('urllib3', 'keystoneauth'):
        logging.getLogger(noisy).setLevel(
            logging.DEBUG if conf.debug else logging.WARNING)
    logging.getLogger('stevedore').setLevel(logging.WARNING)
