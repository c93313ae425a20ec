"""Start-time checks of the TLS files the notifiers are given.

The engine's and the webhook's CA bundle, client certificate and key are
read only when a notification is sent, long after start; a missing or
unusable file is reported at start instead, naming the option.
"""

from __future__ import annotations

import os
import ssl

from monitor.errors import ConfigError


def readable_file_problem(path):
    """Why ``path`` cannot be read as a file, or None when it can."""
    if not os.path.exists(path):
        return 'does not exist'
    if not os.path.isfile(path):
        return 'is not a regular file'
    try:
        with open(path, 'rb'):
            pass
    except OSError as exc:
        return 'cannot be read: %s' % (exc.strerror or exc)
    return None


def check_readable(group, option, path):
    """:raises ConfigError: when ``path`` is not a readable file."""
    problem = readable_file_problem(path)
    if problem:
        raise ConfigError(group, option, '%s %s' % (path, problem))


def load_ca(context, group, option, path):
    """Load the CA bundle ``path`` into ``context``.

    :raises ConfigError: when the file holds no usable CA certificate.
    """
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        raise ConfigError(group, option, '%s holds no usable CA certificate '
                          '(%s)' % (path, exc.reason or exc)) from None


def client_context():
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def check_cafile(group, option, path):
    """A readable CA bundle holding at least one usable certificate.

    :raises ConfigError: naming ``[group] option``.
    """
    check_readable(group, option, path)
    load_ca(client_context(), group, option, path)
