"""What the daemon logs about its configuration at start: every effective
setting (URL passwords masked), and the options and sections of the files
that it does not know."""

import logging

from oslo_config import cfg

from monitor import masking
from monitor.conf import files
from monitor.conf import opts
from monitor.conf import values


def log_effective_settings(conf, logger):
    """Log every option at INFO.

    Options marked secret are masked by oslo.config; the password of any
    URL among the values (endpoint, connection_uri, auth_url) is masked
    here.
    """
    conf.log_opt_values(_MaskingLogger(logger), logging.INFO)


class _MaskingLogger:
    """The little of a logger that ``log_opt_values`` uses, masking URL
    credentials in each line."""

    def __init__(self, logger):
        self._logger = logger

    def log(self, level, msg, *args):
        if args:
            msg = msg % args
        self._logger.log(level, '%s', masking.mask(msg))


def unknown_options(conf):
    """[(section, option or None)] in the config files that the daemon does
    not know: an option misspelt in a known section, or a section no option
    group has (option None). Call after validation, which registers the
    authentication plugin's options."""
    known_names = _known_names(conf)
    unknown = []
    for section, section_values in files.file_sections(conf).items():
        if section != 'DEFAULT' and section not in known_names:
            unknown.append((section, None))
            continue
        known = known_names[section]
        for key in section_values:
            if key.replace('-', '_') not in known:
                unknown.append((section, key))
    return unknown


def warn_unknown_options(conf, logger):
    """One WARNING line per option or section :func:`unknown_options`
    finds."""
    for section, option in unknown_options(conf):
        if option is None:
            logger.warning('[%s] is not a known section; ignored', section)
        else:
            logger.warning('[%s] %s is not a known option; ignored',
                           section, option)


def _known_names(conf):
    """{section: names an option may be written as}, DEFAULT included."""
    known = {'DEFAULT': set()}
    groups = []
    for key in conf:
        if isinstance(values.safe_value(conf, None, key),
                      cfg.ConfigOpts.GroupAttr):
            groups.append(key)
        else:
            known['DEFAULT'].add(key)
    for group in groups:
        known[group] = set(conf[group])
    for group, group_opts in opts.all_opts():
        names = known.setdefault(getattr(group, 'name', group), set())
        for opt in group_opts:
            names.add(opt.dest)
            for old in opt.deprecated_opts:
                if old.group in (None, getattr(group, 'name', group)) and (
                        old.name):
                    names.add(old.name.replace('-', '_'))
    return known
