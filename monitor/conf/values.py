"""Reading the registered options' values the way validation needs them.

Which options are registered (those of authentication plugins included),
their values without oslo.config raising, which of them are secret, and
the text that says why a value is not valid without quoting a secret.
"""

from oslo_config import cfg
from oslo_config import types

from monitor.conf import files
from monitor.conf import opts


def option_specs():
    """{(group or None, dest): Opt} for every option the daemon lists."""
    specs = {}
    for group, group_opts in opts.all_opts():
        name = getattr(group, 'name', group)
        for opt in group_opts:
            specs[(None if name == 'DEFAULT' else name, opt.dest)] = opt
    return specs


def is_secret(group, name):
    """Whether the option's value must never be shown."""
    for opt_group, group_opts in opts.all_opts():
        group_name = getattr(opt_group, 'name', opt_group)
        if group_name == (group or 'DEFAULT'):
            for opt in group_opts:
                if opt.dest == name:
                    return opt.secret
    # Registered at run time (authentication plugins): assume the worst.
    return True


def registered_options(conf):
    """(group, name) of every registered option; group None for DEFAULT."""
    groups = []
    for key in conf:
        try:
            value = conf[key]
        except cfg.Error:
            # An option whose value is bad; validation reports it.
            yield None, key
            continue
        if isinstance(value, cfg.ConfigOpts.GroupAttr):
            groups.append(key)
        else:
            yield None, key
    for group in groups:
        for name in conf[group]:
            yield group, name


def value(conf, group, name):
    """The option's value; oslo.config raises cfg.Error if it is bad."""
    if group is None:
        return conf[name]
    return conf[group][name]


def safe_value(conf, group, name):
    """The option's value, or None where it is bad."""
    try:
        return value(conf, group, name)
    except cfg.Error:
        return None


def value_error_text(conf, group, name, exc, opt=None):
    """Why the option's value is not valid, from oslo.config's ``exc``,
    with the value as written unless it is secret."""
    if is_secret(group, name):
        # oslo.config's text quotes the value.
        return 'not a valid value (the value is secret and not shown)'
    if opt is not None and isinstance(opt.type, types.URI):
        text = 'not a URL (%s)' % ', '.join(opt.type.schemes or ['any'])
    else:
        text = str(exc)
        # oslo.config: 'Value for option X from <where> is not valid: <why>'
        marker = ' is not valid: '
        if marker in text:
            text = text.split(marker, 1)[1]
        text = text.rstrip('.')
        if len(text) > 1 and text[0].isupper() and text[1].islower():
            text = text[0].lower() + text[1:]
    raw = files.raw_value(conf, group, name)
    if raw is not None:
        text += ' (got %s)' % raw
    return text
