"""Each domain's own settings from its metadata: their one owner (the
latest read wins), its failure threshold, and opting out."""

import logging

from dogpile.cache import region as dogpile_region

from monitor.daemon import domain_settings
from monitor.health import record as domain_record
from monitor.store import domain_store
from monitor.virt import domains
from monitor.virt import metadata as domain_metadata

UUID = '6f1f5a7e-2c8e-4d0a-9a57-000000000001'


def make(threshold=3):
    region = dogpile_region.make_region().configure('dogpile.cache.memory')
    store = domain_store.DomainStore(region, namespace='compute-1')
    return domain_settings.DomainSettings(store, threshold), store


def test_a_domain_has_its_own_threshold_else_the_configured_one():
    settings, _store = make(threshold=3)
    assert settings.threshold_of(UUID) == 3

    settings.note(UUID, 'vm', domain_metadata.DomainSettings(
        failure_threshold=5), None)
    assert settings.threshold_of(UUID) == 5

    settings.note(UUID, 'vm', None, None)
    assert settings.threshold_of(UUID) == 3


def test_an_opted_out_domain_loses_its_record_and_is_said_once(caplog):
    caplog.set_level(logging.INFO, logger='monitor')
    settings, store = make()
    store.put(domain_record.DomainRecord(uuid=UUID, name='vm'))
    off = domain_metadata.DomainSettings(enabled=False)

    assert settings.note(UUID, 'vm', off, None) is False
    assert settings.note(UUID, 'vm', off, None) is False

    assert store.get(UUID) is None
    assert len([r for r in caplog.records
                if 'enabled="no"' in r.getMessage()]) == 1


def test_a_domain_that_left_the_listing_is_looked_at_afresh():
    settings, _store = make()
    settings.note(UUID, 'vm', domain_metadata.DomainSettings(
        failure_threshold=7), None)

    settings.keep_only(set())

    assert settings.of(UUID) == domain_metadata.DEFAULTS


def listing(settings=None, read_at=None):
    return domains.DomainInfo(UUID, 'vm', True, False, None,
                              settings=settings, settings_read_at=read_at)


def test_a_listing_that_did_not_read_the_xml_leaves_the_settings_kept():
    settings, _store = make(threshold=3)
    settings.listed(listing(domain_metadata.DomainSettings(
        failure_threshold=5), read_at=1.0))

    settings.listed(listing())

    assert settings.threshold_of(UUID) == 5


def test_only_a_later_read_replaces_the_settings_kept():
    settings, _store = make(threshold=3)
    settings.changed(UUID, 'vm', domain_metadata.DomainSettings(
        failure_threshold=7), read_at=10.0)

    # Read before the change, handed over after it.
    settings.listed(listing(domain_metadata.DEFAULTS, read_at=9.0))
    assert settings.threshold_of(UUID) == 7
    settings.changed(UUID, 'vm', domain_metadata.DEFAULTS, read_at=9.5)
    assert settings.threshold_of(UUID) == 7

    # Read after it (a reconnect reads every domain again).
    settings.listed(listing(domain_metadata.DomainSettings(
        failure_threshold=4), read_at=11.0))
    assert settings.threshold_of(UUID) == 4


def test_a_domains_own_probes_replace_the_configured_ones():
    settings, _store = make()
    configured = ('configured',)
    assert settings.probes_of(UUID, configured) == configured
    assert settings.with_own_probes() == []

    settings.note(UUID, 'vm', domain_metadata.DomainSettings(
        probes=('own',), application_action='reset'), None)

    assert settings.probes_of(UUID, configured) == ('own',)
    assert settings.with_own_probes() == [UUID]
    assert settings.application_action_of(UUID) == 'reset'
