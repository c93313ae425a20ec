"""Each listed domain's own monitoring settings, from its ``<monitor/>``
metadata element: whether it is monitored at all, its failure threshold
and its recovery action. A domain without settings of its own has the
configured defaults.

The one owner of a domain's settings: the libvirt edge keeps none. A
listing hands them over when it has read the domain's XML (the first
listing of each run of the domain, and every listing after a reconnect,
so a change made while libvirt was out of sight applies then), and a
metadata-change event reads them at once. Each read carries the time it
was asked for and only a later one replaces what is kept: a listing that
read the XML just before a change cannot undo the change's own read.

The effective failure threshold is decided here too: the tracker counts
misses against it and the scheduler confirms a missing guest up to it.
"""

import logging
import time

from monitor.virt import metadata as domain_metadata

LOG = logging.getLogger(__name__)


class DomainSettings:

    def __init__(self, store, failure_threshold):
        """``failure_threshold``: the configured one, for domains whose
        metadata does not set theirs."""
        self.store = store
        self.failure_threshold = failure_threshold
        # Settings other than the defaults, by UUID.
        self._settings = {}
        # When the XML the kept settings come from was asked for, by
        # UUID (monotonic clock of the libvirt edge).
        self._read_at = {}
        # UUIDs opted out by their metadata (enabled="no"), said once.
        self._opted_out = set()
        # (UUID, error) of invalid metadata elements already logged.
        self._errors = set()

    def of(self, uuid):
        """The domain's own settings (defaults when it has none)."""
        return self._settings.get(uuid, domain_metadata.DEFAULTS)

    def threshold_of(self, uuid):
        """Misses in a row that report the domain."""
        return self.of(uuid).failure_threshold or self.failure_threshold

    def probes_of(self, uuid, configured=()):
        """The domain's application probes: its own when its metadata
        declares any, else ``configured`` ([probes] probe)."""
        own = self.of(uuid).probes
        return tuple(configured) if own is None else own

    def with_own_probes(self):
        """UUIDs of the domains whose metadata declares probes."""
        return [uuid for uuid, settings in self._settings.items()
                if settings.probes is not None]

    def application_action_of(self, uuid):
        """The domain's own action for an application failure, or None
        (the configured one)."""
        return self.of(uuid).application_action

    def listed(self, info):
        """A listed domain (domains.DomainInfo): keep the settings its
        listing read, unless read before the ones kept; False when it
        opted out (see note())."""
        settings = getattr(info, 'settings', None)
        error = getattr(info, 'settings_error', None)
        read_at = getattr(info, 'settings_read_at', None)
        if (settings is None and error is None) or \
                not self._newer(info.uuid, read_at):
            # Not read by this listing, or older: the kept ones hold.
            return self.note(info.uuid, info.name, self.of(info.uuid), None)
        return self.note(info.uuid, info.name, settings, error, read_at)

    def changed(self, uuid, name, settings, error=None, read_at=None):
        """A domain's metadata changed while it runs: apply its new
        settings now, without waiting for the next listing. ``read_at``:
        when they were read (None: now)."""
        if read_at is None:
            read_at = time.monotonic()
        if not self._newer(uuid, read_at):
            return
        before = self.of(uuid)
        # Opted out: the record goes now. Enabled again: the next listing
        # takes the domain back, in discovery.
        self.note(uuid, name, settings, error, read_at)
        after = self.of(uuid)
        if after != before:
            LOG.info('Domain %s (%s): settings from its metadata now '
                     'enabled=%s, failure_threshold=%s, action=%s, '
                     'application_action=%s, probes=%s', name,
                     uuid, 'yes' if after.enabled else 'no',
                     after.failure_threshold or 'default',
                     after.action or 'default',
                     after.application_action or 'default',
                     'default' if after.probes is None else
                     ', '.join(probe.name for probe in after.probes))

    def _newer(self, uuid, read_at):
        kept = self._read_at.get(uuid)
        return read_at is None or kept is None or read_at >= kept

    def note(self, uuid, name, settings, error, read_at=None):
        """Keep a domain's settings (read at ``read_at``, None: unknown);
        False when it opted out (its record, if any, is dropped and it is
        said once)."""
        if read_at is not None:
            self._read_at[uuid] = read_at
        if error is not None and (uuid, error) not in self._errors:
            self._errors.add((uuid, error))
            LOG.warning('Domain %s (%s): its <monitor/> metadata element is '
                        'ignored, the configured defaults apply: %s', name,
                        uuid, error)
        settings = settings or domain_metadata.DEFAULTS
        if settings == domain_metadata.DEFAULTS:
            self._settings.pop(uuid, None)
        else:
            self._settings[uuid] = settings
        if settings.enabled:
            if uuid in self._opted_out:
                self._opted_out.discard(uuid)
                LOG.info('Domain %s (%s) is monitored again: its metadata '
                         'no longer says enabled="no"', name, uuid)
            return True
        if uuid not in self._opted_out:
            self._opted_out.add(uuid)
            LOG.info('Domain %s (%s) is not monitored: its metadata says '
                     'enabled="no"', name, uuid)
        if self.store.get(uuid) is not None:
            self.store.delete(uuid)
        return False

    def keep_only(self, listed):
        """Forget what is known of domains not in ``listed``: one that
        runs here again is looked at (and said) afresh."""
        self._opted_out &= listed
        for uuid in set(self._settings) - listed:
            del self._settings[uuid]
        for uuid in set(self._read_at) - listed:
            del self._read_at[uuid]
        self._errors = {key for key in self._errors if key[0] in listed}
