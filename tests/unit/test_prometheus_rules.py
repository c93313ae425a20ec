"""The shipped Prometheus alert rules: valid, unit-tested, and built only
on what the daemon exports."""

import os
import pathlib
import shutil
import subprocess

import pytest
import yaml

from tests.unit.cmd import live_metrics

REPO = pathlib.Path(__file__).resolve().parents[2]
RULES = REPO / 'etc' / 'prometheus' / 'guest-health-monitor.rules.yml'
RULE_TESTS = RULES.with_name('guest-health-monitor.rules.test.yml')
RUNBOOKS = REPO / 'docs' / 'runbooks.md'


def promtool():
    path = shutil.which('promtool')
    if path is None:
        why = ('promtool is not installed (Debian package prometheus; '
               'lab/host-setup.sh installs it)')
        if os.environ.get('CI'):
            pytest.fail(why)
        pytest.skip(why)
    return path


def rules():
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document['groups'] for rule in group['rules']]


def test_promtool_accepts_the_rules():
    result = subprocess.run([promtool(), 'check', 'rules', str(RULES)],
                            capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_pass_their_unit_tests():
    result = subprocess.run([promtool(), 'test', 'rules', RULE_TESTS.name],
                            cwd=RULE_TESTS.parent, capture_output=True,
                            text=True, timeout=120)

    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested():
    tested = RULE_TESTS.read_text()

    untested = [r['alert'] for r in rules()
                if 'alertname: %s\n' % r['alert'] not in tested]

    assert not untested


def test_every_alert_has_a_severity_a_summary_and_its_runbook():
    runbook_headings = {line[3:].strip().lower()
                        for line in RUNBOOKS.read_text().splitlines()
                        if line.startswith('## ')}
    for rule in rules():
        assert rule['labels']['severity'] in ('critical', 'warning', 'info')
        annotations = rule['annotations']
        assert annotations['summary'] and annotations['description']
        anchor = rule['alert'].lower()
        assert annotations['runbook_url'] == 'docs/runbooks.md#' + anchor
        assert anchor in runbook_headings, rule['alert']


def test_the_rules_use_only_metrics_a_live_daemon_exports(monkeypatch):
    with live_metrics.running_service(monkeypatch) as service:
        exported = live_metrics.exported_names(live_metrics.scrape(service))

    used = set()
    for rule in rules():
        used |= live_metrics.metric_names(rule['expr'])

    assert 'guest_health_monitor_sweeps_total' in used
    assert used - exported - live_metrics.SCRAPE_SERIES == set()
