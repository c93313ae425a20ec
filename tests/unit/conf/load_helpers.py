"""Loading one config file as the daemon does, for the tests of the
configuration modules: the configuration, or the error that names the
option."""

import pytest

from monitor import errors
from monitor.conf import loading

ENDPOINT = 'http://127.0.0.1:15868/v1'


def load(path):
    return loading.load(['--config-file', path], default_config_files=[])


def load_error(path):
    with pytest.raises(errors.ConfigError) as excinfo:
        load(path)
    return excinfo.value
