"""Each domain's own settings from its metadata: the one owner of its
failure threshold, and opting out."""

import logging

from dogpile.cache import region as dogpile_region

from monitor.daemon import domain_settings
from monitor.health import record as domain_record
from monitor.store import domain_store
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
