"""Every configuration option of the daemon, for oslo-config-generator.

Options live next to the module that uses them; each such module has
``list_opts()`` and ``register_opts(conf)``. This module gathers them. The
modules are imported only when asked for, so importing this one stays cheap
and a broken module fails with its own name at that point.
"""

import importlib

from oslo_config import cfg

# Modules that own options, in the order their options appear in the sample.
OPTION_MODULES = (
    'monitor.config',
    'monitor.logs',
    'monitor.libvirt_host',
    'monitor.scheduler',
    'monitor.health_policy',
    'monitor.mass_failure',
    'monitor.domain_xml',
    'monitor.domain_store',
    'monitor.notifier_driver',
    'monitor.notifier',
    'monitor.webhook',
    'monitor.recovery',
    'monitor.evidence',
    'monitor.outbox',
    'monitor.delivery',
    'monitor.metrics_server',
)

# Help for groups whose options come from several modules.
GROUP_HELP = {
    'monitor': 'Guest pinging, the health policy and which domains to '
               'monitor.',
    'cache': 'Where the per-domain health records are kept (dogpile.cache).',
}


def _modules():
    modules = []
    for name in OPTION_MODULES:
        try:
            modules.append(importlib.import_module(name))
        except ImportError as exc:
            raise ImportError(
                'cannot collect configuration options from %s: %s'
                % (name, exc), name=name) from exc
    return modules


def _group_name(group):
    return group.name if isinstance(group, cfg.OptGroup) else group


def list_opts():
    """[(group, [opts])], one entry per group, merged across modules.

    The group is an OptGroup where one gives the group help, else its name.
    """
    merged = {}
    groups = {}
    for module in _modules():
        for group, module_opts in module.list_opts():
            name = _group_name(group)
            if isinstance(group, cfg.OptGroup):
                groups.setdefault(name, group)
            elif name in GROUP_HELP:
                groups.setdefault(name, cfg.OptGroup(name,
                                                     help=GROUP_HELP[name]))
            merged.setdefault(name, []).extend(module_opts)
    return [(groups.get(name, name), merged[name]) for name in merged]


def register_all(conf):
    """Register every option of the daemon on ``conf``."""
    for name, help_text in GROUP_HELP.items():
        conf.register_group(cfg.OptGroup(name, help=help_text))
    for module in _modules():
        module.register_opts(conf)
