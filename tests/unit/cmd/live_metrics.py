"""What a real daemon exports, and which metrics a PromQL expression names.

:func:`scrape` runs a real MonitorService on libvirt's test driver (one
guest whose agent answers), makes one round, and reads its /metrics over
HTTP, so the alert rules and the dashboard are checked against what the
daemon serves rather than against a list kept by hand.
"""

import contextlib
import pathlib
import re
import tempfile
import urllib.request

import eventlet
from eventlet import tpool

from monitor.conf import loading
from monitor.daemon import metrics_server
from monitor.daemon import service as service_mod
from monitor.virt import events as libvirt_events
from monitor.virt import guest_ping
from tests.unit.virt import libvirt_node

GUEST_UUID = 'cccccccc-0000-4000-8000-000000000001'
NODE = '<node>%s\n</node>\n' % libvirt_node.domain(
    'guest-1', GUEST_UUID,
    devices=libvirt_node.agent_channel('/run/guest-1.sock'))

# Series Prometheus makes itself for each target, not the daemon.
SCRAPE_SERIES = frozenset({'up', 'scrape_duration_seconds',
                           'scrape_samples_scraped'})

_HISTOGRAM_SUFFIXES = ('_bucket', '_sum', '_count')


def write_conf(directory):
    """A daemon configuration on the test driver under ``directory``."""
    directory = pathlib.Path(directory)
    node = directory / 'node.xml'
    node.write_text(NODE)
    path = directory / 'daemon.conf'
    path.write_text(f"""
[DEFAULT]
host = compute-1
state_path = {directory}/state
[libvirt]
connection_uri = test://{node}
[notifier]
endpoint = http://127.0.0.1:9/v1
auth_type = none
""")
    return str(path)


@contextlib.contextmanager
def running_service(monkeypatch):
    """A MonitorService on the test driver after one round, its guest's
    agent answering."""
    monkeypatch.setattr(guest_ping.libvirt_qemu, 'qemuAgentCommand',
                        libvirt_node.AgentStandIn(reply='{"return": {}}'))
    libvirt_events.start_event_loop()
    # sun_path holds 108 bytes; pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix='ghm-') as directory:
        conf = loading.load(['--config-file', write_conf(directory)],
                            default_config_files=[])
        service = service_mod.MonitorService(conf)
        try:
            assert service.scheduler.ensure_connected() == 0
            service.scheduler.sweep()
            yield service
        finally:
            service.close()


def scrape(service):
    """The text ``service`` serves at /metrics, read over HTTP."""
    server = metrics_server.MetricsServer(metrics_server.make_app(
        service.metrics, lambda: (True, 'ok')), port=0)
    server.start()
    try:
        url = 'http://127.0.0.1:%d/metrics' % server.port
        # A plain blocking client, in a native thread so that the green
        # server answers.
        return tpool.execute(_get, url)
    finally:
        server.stop()
        eventlet.sleep(0)


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode('utf-8')


def exported_names(text):
    """Every series name a query may use on the exposition ``text``:
    sample names, and for each family its name, with a histogram's
    _bucket, _sum and _count (families without samples yet count too)."""
    names = set()
    for line in text.splitlines():
        if line.startswith('# TYPE '):
            _, _, name, kind = line.split(None, 3)
            names.add(name)
            if kind == 'histogram':
                names.update(name + s for s in _HISTOGRAM_SUFFIXES)
        elif line and not line.startswith('#'):
            names.add(re.split(r'[{ ]', line, maxsplit=1)[0])
    return names


_KEYWORDS = frozenset({
    'and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left',
    'group_right', 'bool', 'offset', 'inf', 'nan', 'le', 'atan2'})
# Label lists after these words, which name labels, not metrics.
_LABEL_LISTS = re.compile(
    r'\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)')
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_VARIABLES = re.compile(r'\$\{[^}]*\}|\$\w+')
_IDENTIFIER = re.compile(r'(?<![\w:.])([a-zA-Z_:][\w:]*)(\s*\()?')


def metric_names(expr):
    """The metric names a PromQL ``expr`` reads (Grafana's $variables
    allowed)."""
    text = _VARIABLES.sub('1m', expr)
    text = _STRINGS.sub('""', text)
    text = re.sub(r'\{[^}]*\}', '', text)       # label matchers
    text = re.sub(r'\[[^\]]*\]', '', text)      # ranges and subqueries
    text = _LABEL_LISTS.sub('', text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        word, call = match.groups()
        if call or word.lower() in _KEYWORDS:
            continue  # a function, or a keyword
        if re.fullmatch(r'\d+[smhdwy]', word):
            continue
        names.add(word)
    return names
