"""Every configuration option of the daemon, for oslo-config-generator.

Options live next to the module that uses them; each such module has
``list_opts()`` and ``register_opts(conf)``. This module gathers them. The
modules are imported only when asked for, so importing this one stays cheap
and a broken module fails with its own name at that point.
"""

import functools
import importlib

from oslo_config import cfg

# Modules that own options, in the order their options appear in the sample.
OPTION_MODULES = (
    'monitor.conf.general',
    'monitor.conf.log_setup',
    'monitor.virt.host',
    'monitor.daemon.scheduler',
    'monitor.daemon.fast_confirmation',
    'monitor.health.policy',
    'monitor.health.guest_activity',
    'monitor.health.host_operations',
    'monitor.health.mass_failure',
    'monitor.virt.domain_xml',
    'monitor.store.domain_store',
    'monitor.notify.drivers',
    'monitor.notify.masakari_conf',
    'monitor.notify.masakari',
    'monitor.notify.webhook',
    'monitor.notify.alertmanager',
    'monitor.health.recovery_policy',
    'monitor.health.io_error_pauses',
    'monitor.store.evidence',
    'monitor.daemon.recovery_deadlines',
    'monitor.daemon.probe_runner',
    'monitor.notify.outbox',
    'monitor.notify.delivery',
    'monitor.daemon.metrics_server',
)

# Libraries whose options the daemon registers. Each publishes them under
# its own oslo-config-generator namespace (etc/oslo-config-generator.conf
# lists it), so list_opts() leaves them out and the sample shows them once.
LIBRARY_NAMESPACES = ('oslo.log',)

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


def library_opts():
    """[(group, [opts])] of the libraries in LIBRARY_NAMESPACES, as they
    publish them to oslo-config-generator."""
    return list(_library_opts())


# Entry points are found by scanning every installed distribution; the
# libraries' option lists do not change while the process runs.
@functools.lru_cache(maxsize=None)
def _library_opts():
    from importlib import metadata

    listed = []
    points = metadata.entry_points(group='oslo.config.opts')
    for namespace in LIBRARY_NAMESPACES:
        found = [point for point in points if point.name == namespace]
        if not found:
            raise ImportError('no oslo.config.opts entry point %s: is the '
                              'library installed?' % namespace)
        for group, group_opts in found[0].load()():
            listed.append((group or 'DEFAULT', list(group_opts)))
    return tuple(listed)


def all_opts():
    """Every option the daemon reads: list_opts() and library_opts()."""
    merged = {}
    groups = {}
    for group, group_opts in list_opts() + library_opts():
        name = _group_name(group)
        groups.setdefault(name, group)
        merged.setdefault(name, []).extend(group_opts)
    return [(groups[name], merged[name]) for name in merged]


def register_all(conf):
    """Register every option of the daemon on ``conf``."""
    for name, help_text in GROUP_HELP.items():
        conf.register_group(cfg.OptGroup(name, help=help_text))
    for module in _modules():
        module.register_opts(conf)
