"""A valid config file to start from, for the tests of the configuration
modules."""

import pytest

from tests.unit.conf.load_helpers import ENDPOINT


@pytest.fixture
def state_path(tmp_path):
    return str(tmp_path / 'state')


@pytest.fixture
def write_conf(tmp_path, state_path):
    """Write a config file: a valid base plus the given sections."""

    def write(name='ghm.conf', **sections):
        merged = {
            'DEFAULT': {'state_path': state_path, 'host': 'compute-1'},
            'notifier': {'endpoint': ENDPOINT},
        }
        for section, values in sections.items():
            merged.setdefault(section, {}).update(values)
        lines = []
        for section, values in merged.items():
            lines.append('[%s]' % section)
            for key, value in values.items():
                if value is None:
                    continue
                for item in value if isinstance(value, list) else [value]:
                    lines.append('%s = %s' % (key, item))
        path = tmp_path / name
        path.write_text('\n'.join(lines) + '\n')
        return str(path)

    return write
