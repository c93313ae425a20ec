"""The configuration files as written, read beside oslo.config.

Which files the command line names, whether they can be read at all, where
one fails to parse (without quoting the line, which may hold a password),
and the raw text of their options: oslo.config keeps none of that, and the
operator needs it to hear what is wrong.
"""

import argparse
import glob
import os

from oslo_config import cfg

from monitor.conf import general
from monitor.errors import ConfigError


def _config_file_arguments(argv, default_config_files):
    """The config files and directories the command line names, else the
    default files, as oslo.config will read them."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument('--config-file', action='append', default=[])
    parser.add_argument('--config-dir', action='append', default=[])
    try:
        known, _rest = parser.parse_known_args(argv)
    except SystemExit:
        # A malformed command line; oslo.config says what is wrong.
        return [], []
    files = known.config_file
    if not files and not known.config_dir:
        if default_config_files is None:
            files = cfg.find_config_files(project=general.PROJECT,
                                          prog=general.PROG)
        else:
            files = list(default_config_files)
    return files, known.config_dir


def _file_problem(path):
    """Why ``path`` cannot be read as a config file, or None."""
    if os.path.isdir(path):
        return 'is a directory'
    try:
        with open(path, 'rb') as stream:
            stream.read().decode('utf-8')
    except FileNotFoundError:
        # oslo.config reports missing files itself.
        return None
    except OSError as exc:
        return exc.strerror or str(exc)
    except UnicodeDecodeError as exc:
        return 'not UTF-8 text (byte %d)' % exc.start
    return None


def parse_error_text(argv, default_config_files):
    """Where and why a config file cannot be parsed, without its line."""
    files, dirs = _config_file_arguments(argv, default_config_files)
    for directory in dirs:
        files = files + sorted(glob.glob(os.path.join(directory, '*.conf')))
    for path in files:
        try:
            cfg.ConfigParser(path, {}).parse()
        except cfg.ParseError as exc:
            return 'configuration file %s, line %d: %s' % (
                path, exc.lineno, exc.msg)
        except (OSError, UnicodeDecodeError):
            continue
    return None


def check_config_files(argv, default_config_files):
    """Every config file the command line names is a readable UTF-8 file
    and every config directory a directory.

    :raises ConfigError: naming the first file that is not.
    """
    files, dirs = _config_file_arguments(argv, default_config_files)
    for directory in dirs:
        if os.path.exists(directory) and not os.path.isdir(directory):
            raise ConfigError(None, None, 'configuration directory %s is '
                              'not a directory' % directory)
        files = files + sorted(glob.glob(os.path.join(directory, '*.conf')))
    for path in files:
        problem = _file_problem(path)
        if problem:
            raise ConfigError(None, None, 'configuration file %s: %s'
                              % (path, problem))


def _config_files(conf):
    files = list(conf.config_file or [])
    dirs = [conf.config_dir] if conf.config_dir else list(
        conf.default_config_dirs or [])
    for directory in dirs:
        files.extend(sorted(glob.glob(os.path.join(directory, '*.conf'))))
    return files


def file_sections(conf):
    """{section: {option: [values]}} merged over the config files."""
    merged = {}
    for path in _config_files(conf):
        sections = {}
        try:
            cfg.ConfigParser(path, sections).parse()
        except (OSError, UnicodeDecodeError, cfg.ParseError):
            continue
        for section, values in sections.items():
            merged.setdefault(section, {}).update(values)
    return merged


def raw_value(conf, group, name):
    """The option's text as last written in the config files, if found.

    Only used to show the operator what was wrong; oslo.config does not
    keep the raw text of a value it cannot convert.
    """
    values = file_sections(conf).get(group or 'DEFAULT', {}).get(name)
    return values[-1] if values else None
