"""The config files as written: unreadable, misnamed or unparsable files
are named without quoting their lines, and the raw text of a bad value is
the one written last."""

import os
import re

import pytest

from monitor import errors
from monitor.conf import loading
from tests.unit.conf.load_helpers import load


def test_the_last_file_given_wins_in_the_raw_value(write_conf):
    first = write_conf('a.conf', monitor={'interval': '-1'})
    second = write_conf('b.conf', monitor={'interval': '-2'})
    with pytest.raises(errors.ConfigError, match=re.escape('(got -2)')):
        loading.load(['--config-file', first, '--config-file', second],
                    default_config_files=[])


def test_missing_config_file(tmp_path):
    missing = str(tmp_path / 'missing.conf')
    with pytest.raises(errors.ConfigError) as excinfo:
        loading.load(['--config-file', missing], default_config_files=[])
    assert excinfo.value.option is None
    assert 'missing.conf' in str(excinfo.value)


def test_unparsable_config_file(tmp_path):
    path = tmp_path / 'broken.conf'
    path.write_text('interval = 5\n')  # no section
    with pytest.raises(errors.ConfigError) as excinfo:
        load(str(path))
    assert 'broken.conf' in str(excinfo.value)


def test_a_parse_error_does_not_quote_the_line(write_conf, tmp_path):
    path = tmp_path / 'broken.conf'
    path.write_text('[notifier]\npassword pw-s3cret-without-equals\n')
    with pytest.raises(errors.ConfigError) as excinfo:
        load(str(path))
    assert str(excinfo.value) == (
        "configuration file %s, line 2: No ':' or '=' found in assignment"
        % path)


def test_a_config_path_that_is_a_directory(tmp_path):
    with pytest.raises(errors.ConfigError) as excinfo:
        load(str(tmp_path))
    assert str(excinfo.value) == ('configuration file %s: is a directory'
                                  % tmp_path)


def test_a_config_file_that_is_not_utf8(tmp_path):
    path = tmp_path / 'latin1.conf'
    path.write_bytes('[DEFAULT]\nhost = h\xf6st\n'.encode('latin-1'))
    with pytest.raises(errors.ConfigError) as excinfo:
        load(str(path))
    assert str(excinfo.value) == ('configuration file %s: not UTF-8 text '
                                  '(byte 18)' % path)


def test_a_config_dir_file_that_is_not_utf8(tmp_path, write_conf):
    conf_dir = tmp_path / 'conf.d'
    conf_dir.mkdir()
    (conf_dir / '10-bad.conf').write_bytes(b'[monitor]\n# \xff\n')
    with pytest.raises(errors.ConfigError) as excinfo:
        loading.load(['--config-file', write_conf(),
                     '--config-dir', str(conf_dir)], default_config_files=[])
    assert '10-bad.conf: not UTF-8 text' in str(excinfo.value)


@pytest.mark.skipif(os.geteuid() == 0, reason='root reads any file')
def test_an_unreadable_config_file(write_conf):
    path = write_conf()
    os.chmod(path, 0)
    with pytest.raises(errors.ConfigError) as excinfo:
        load(path)
    assert 'Permission denied' in str(excinfo.value)
