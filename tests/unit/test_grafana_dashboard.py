"""The shipped Grafana dashboard: every query reads only what the daemon
exports."""

import json
import pathlib
import re

from tests.unit.cmd import live_metrics

REPO = pathlib.Path(__file__).resolve().parents[2]
DASHBOARD = REPO / 'etc' / 'grafana' / 'guest-health-monitor.json'

# label_values(METRIC, LABEL): the last argument names a label.
_LABEL_VALUES = re.compile(r'label_values\(([^,]*),\s*\w+\s*\)')


def queries(node):
    """Every PromQL text in the dashboard: panel targets' expr and the
    templating variables' queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == 'expr' and isinstance(value, str):
                yield value
            elif (key == 'query' and isinstance(value, str)
                  and 'label_values' in value):
                yield _LABEL_VALUES.sub(r'\1', value)
            else:
                yield from queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from queries(item)


def dashboard():
    return json.loads(DASHBOARD.read_text())


def test_the_dashboard_is_importable_json_with_a_fixed_uid():
    document = dashboard()

    assert document['uid'] == 'guest-health-monitor'
    assert document['id'] is None
    ids = [panel['id'] for panel in document['panels']]
    assert len(ids) == len(set(ids))


def test_the_dashboard_covers_what_operators_watch():
    used = set()
    for query in queries(dashboard()):
        used |= live_metrics.metric_names(query)

    prefix = 'guest_health_monitor_'
    for name in ('sweeps_total', 'sweep_duration_seconds_bucket', 'domains',
                 'pings_total', 'notifications_queued_total',
                 'notifications_delivered_total', 'notifications_rejected_total',
                 'outbox_pending', 'outbox_dead_letters',
                 'recovery_timeouts_total', 'recovery_calls_stuck',
                 'mass_failure_breaker_tripped', 'libvirt_connected',
                 'libvirt_reconnects_total'):
        assert prefix + name in used


def test_every_query_reads_only_what_a_live_daemon_exports(monkeypatch):
    with live_metrics.running_service(monkeypatch) as service:
        exported = live_metrics.exported_names(live_metrics.scrape(service))

    unknown = {}
    for query in queries(dashboard()):
        missing = (live_metrics.metric_names(query) - exported
                   - live_metrics.SCRAPE_SERIES)
        if missing:
            unknown[query] = missing

    assert not unknown
