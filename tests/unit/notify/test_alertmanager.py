"""The Alertmanager client: the alert of a failed guest, sent to every
Alertmanager, re-posted while it lasts, ended when the guest is back."""

import json
import threading

import pytest
from oslo_config import cfg

from monitor.errors import ConfigError
from monitor.health import recovery_policy
from monitor.notify import alertmanager
from monitor.notify import alertmanager_alerts as alerts_mod
from monitor.notify import drivers
from monitor.notify import notification as notification_mod
from monitor.notify.notification import OutcomeKind
from tests.unit import http_engine

UUID = '3f1c9e0a-1b2c-4d5e-8f90-123456789abc'
T0 = 1700000000.0


def failure(reason='3 consecutive missed pings (failure threshold 3)',
            at=T0, name='vm-1', uuid=UUID, evidence=()):
    return notification_mod.Notification.new(
        instance_uuid=uuid, domain_name=name, hostname='compute-1', at=at,
        details={'reason': reason, 'consecutive_misses': 3,
                 'recovery': {'action': 'reset', 'result': 'done',
                              'detail': ''},
                 'evidence': list(evidence)})


def resolved(of, at=T0 + 30):
    return notification_mod.Notification.resolving(
        of, at, details={'resolves': of.id, 'reason': 'guest agent '
                         'answered again'})


class Clock:
    def __init__(self, now=T0):
        self.now = now

    def __call__(self):
        return self.now


def client(*servers, tmp_path=None, **options):
    urls = [s if isinstance(s, str) else s.url for s in servers]
    state = None if tmp_path is None else str(tmp_path / 'alerts.json')
    options.setdefault('timeout', 5.0)
    options.setdefault('repost_interval', 60.0)
    return alertmanager.AlertmanagerClient(urls, state, clock=Clock(),
                                           **options)


def posted(server, index=-1):
    request = server.requests[index]
    assert request.method == 'POST'
    assert request.path == '/api/v2/alerts'
    return request.json()


@pytest.fixture
def ok(engine):
    return lambda: engine(http_engine.reply(200, b''))


# -- the alert -----------------------------------------------------------


def test_a_failure_is_one_firing_alert_with_the_guest_in_its_labels(ok):
    am = ok()
    n = failure(evidence=[{'kind': 'console', 'path': '/var/lib/ghm/e/c.log',
                           'size': 1, 'sha256': 'x',
                           'media_type': 'text/plain'}])

    outcome = client(am).send(n)

    assert outcome.kind == OutcomeKind.ACCEPTED
    [alert] = posted(am)
    assert alert['labels'] == {
        'alertname': 'GuestHealthMonitorGuestFailed', 'severity': 'critical',
        'host': 'compute-1', 'domain': 'vm-1', 'uuid': UUID,
        'reason': 'missed_pings'}
    assert alert['startsAt'] == '2023-11-14T22:13:20Z'
    # Valid for four re-post intervals: Alertmanager resolves it by
    # itself once the monitor stops sending it.
    assert alert['endsAt'] == alerts_mod.rfc3339(T0 + 240)
    annotations = alert['annotations']
    assert 'vm-1' in annotations['summary']
    assert 'missed pings' in annotations['description']
    assert annotations['evidence'] == 'console: /var/lib/ghm/e/c.log'
    assert annotations['recovery'] == 'reset: done'
    assert annotations['notification_id'] == n.id


@pytest.mark.parametrize('text, label', [
    ('guest kernel panicked (reported by its pvpanic device)', 'pvpanic'),
    ('guest crashed and libvirt stopped it', 'pvpanic'),
    ('QEMU process of the guest ended unexpectedly', 'qemu_ended'),
    ('watchdog fired; libvirt paused the guest', 'watchdog'),
    ('guest paused on a disk I/O error for 60 s (disk vda)', 'io_error'),
    ('3 consecutive missed pings (filesystems frozen for 312 s)', 'frozen'),
    ('agent did not come back within 300 s after restart', 'missed_pings'),
    ('4 consecutive missed pings (failure threshold 3)', 'missed_pings'),
    ('something new', 'other'),
    (None, 'other'),
])
def test_the_reason_label_is_the_failure_counters_word(text, label):
    assert alerts_mod.reason_label(text) == label


def test_an_application_failure_is_an_alert_of_its_own_name():
    n = notification_mod.Notification.new(
        UUID, 'vm-1', 'compute-1', T0,
        details={'reason': 'application probe db failed 3 times',
                 'incident': 'application'})

    alert = alerts_mod.alert_of(n)

    assert alert['labels']['alertname'] == \
        alerts_mod.APPLICATION_ALERTNAME
    assert alert['labels']['reason'] == 'probe'


def test_text_a_guest_controls_cannot_forge_lines_or_drive_a_terminal(ok):
    am = ok()
    n = failure(reason='application probe web failed: \x1b[2J\nFAKE LINE '
                + 'x' * 5000)

    client(am).send(n)

    [alert] = posted(am)
    summary = alert['annotations']['summary']
    assert '\x1b' not in summary and '\n' not in summary
    assert '\\x1b[2J\\nFAKE LINE' in summary
    assert len(summary) < 1100
    # Labels stay the fixed words, whatever the text said.
    assert alert['labels']['reason'] == 'probe'


# -- several Alertmanagers -----------------------------------------------


def test_every_alertmanager_gets_every_alert(ok):
    first, second = ok(), ok()

    outcome = client(first, second).send(failure())

    assert outcome.kind == OutcomeKind.ACCEPTED
    assert posted(first) == posted(second)


def test_one_alertmanager_down_neither_blocks_the_other_nor_loses_it(
        engine, tmp_path):
    up = engine(http_engine.reply(200))
    down = engine(http_engine.script(http_engine.Response(503, b'down'),
                                     http_engine.Response(200)))
    c = client(up, down, tmp_path=tmp_path)

    outcome = c.send(failure())

    assert outcome.kind == OutcomeKind.ACCEPTED
    assert 'taken by 1 of the 2 Alertmanagers tried' in outcome.message
    assert 'HTTP 503' in outcome.message
    # The next re-post gives the one that was down the active alert.
    c.repost()
    assert posted(down)[0]['labels']['domain'] == 'vm-1'


def test_one_known_down_costs_the_next_alerts_nothing(engine):
    up = engine(http_engine.reply(200))
    down = engine(http_engine.reply(503, b'down'))
    c = client(up, down)
    c.send(failure())
    tried = len(down.requests)

    outcome = c.send(failure(name='vm-2', uuid=UUID.replace('3f', '4f')))

    assert outcome.kind == OutcomeKind.ACCEPTED
    assert len(down.requests) == tried
    # The re-post loop keeps trying it.
    c.repost()
    assert len(down.requests) == tried + 1


def test_those_known_down_are_tried_when_no_other_takes_it(engine):
    first = engine(http_engine.script(http_engine.Response(503),
                                      http_engine.Response(200)))
    second = engine(http_engine.script(http_engine.Response(200),
                                       http_engine.Response(503)))
    c = client(first, second)
    c.send(failure())  # first is down from now on

    outcome = c.send(failure(name='vm-2', uuid=UUID.replace('3f', '4f')))

    assert outcome.kind == OutcomeKind.ACCEPTED
    assert len(first.requests) == 2


def test_none_taking_it_is_retried_by_the_outbox(engine):
    c = client(engine(http_engine.reply(503, b'busy')),
               'http://127.0.0.1:%d' % http_engine.refused_port())

    outcome = c.send(failure())

    assert outcome.kind == OutcomeKind.RETRY
    assert len(c.alerts) == 0


def test_a_refusal_by_every_alertmanager_is_for_good(engine):
    c = client(engine(http_engine.reply(400, b'bad alert')),
               engine(http_engine.reply(422, b'bad alert')))

    outcome = c.send(failure())

    assert outcome.kind == OutcomeKind.REJECTED
    assert 'bad alert' in outcome.message


def test_a_redirect_is_not_followed(engine):
    target = engine(http_engine.reply(200))
    c = client(engine(http_engine.reply(
        307, b'', {'Location': target.url + '/api/v2/alerts'})))

    outcome = c.send(failure())

    assert outcome.kind == OutcomeKind.RETRY
    assert 'redirect not followed' in outcome.message
    assert target.requests == []


# -- re-posts and the end ------------------------------------------------


def test_active_alerts_are_reposted_valid_for_four_more_intervals(ok):
    am = ok()
    c = client(am)
    c.send(failure())
    c._clock.now = T0 + 60

    c.repost()

    [alert] = posted(am)
    assert alert['startsAt'] == '2023-11-14T22:13:20Z'
    assert alert['endsAt'] == alerts_mod.rfc3339(T0 + 60 + 240)


def test_the_end_resolves_the_alert_and_stops_its_reposts(ok):
    am = ok()
    c = client(am)
    n = failure()
    c.send(n)

    outcome = c.send(resolved(n))

    assert outcome.kind == OutcomeKind.ACCEPTED
    [alert] = posted(am)
    assert alert['endsAt'] == alerts_mod.rfc3339(T0 + 30)
    assert alert['labels'] == alerts_mod.alert_of(n)['labels']
    count = len(am.requests)
    c.repost()
    assert len(am.requests) == count
    assert len(c.alerts) == 0


def test_a_repost_under_way_never_reaches_an_alertmanager_after_the_end(ok):
    # The end is sent (by the delivery worker) while a re-post pass that
    # read the alert as firing has yet to POST it: the Alertmanager must
    # get the end last, or it would hold the alert active again.
    am = ok()
    c = client(am)
    n = failure()
    c.send(n)
    c._clock.now = T0 + 60
    read = c.alerts.firing
    ending = []

    def firing_then_the_end_is_sent():
        alerts = read()
        if not ending:
            ending.append(threading.Thread(
                target=c.send, args=(resolved(n, at=T0 + 59),)))
            ending[0].start()
            ending[0].join(1.0)
        return alerts

    c.alerts.firing = firing_then_the_end_is_sent
    c.repost()
    ending[0].join(10.0)

    [last] = posted(am)
    assert last['endsAt'] == alerts_mod.rfc3339(T0 + 59)


def test_the_end_reaches_an_alertmanager_that_was_down_when_back(engine):
    up = engine(http_engine.reply(200))
    flaky = engine(http_engine.script(
        http_engine.Response(200), http_engine.Response(503),
        http_engine.Response(200)))
    c = client(up, flaky)
    n = failure()
    c.send(n)

    assert c.send(resolved(n)).kind == OutcomeKind.ACCEPTED
    assert n.id in c.alerts  # still owed to the one that was down

    c.repost()
    [alert] = posted(flaky)
    assert alert['endsAt'] == alerts_mod.rfc3339(T0 + 30)
    assert n.id not in c.alerts


def test_the_end_of_a_failure_never_alerted_is_not_sent(ok):
    am = ok()

    outcome = client(am).send(resolved(failure()))

    assert outcome.kind == OutcomeKind.ACCEPTED
    assert 'not sent' in outcome.message
    assert am.requests == []


def test_a_new_failure_of_the_domain_ends_its_former_alert(ok):
    am = ok()
    c = client(am)
    first = failure()
    c.send(first)
    second = failure(reason='guest kernel panicked (reported by its pvpanic '
                     'device)', at=T0 + 100)
    c._clock.now = T0 + 100

    c.send(second)
    c.repost()

    alerts = {a['labels']['reason']: a for a in posted(am)}
    assert alerts['pvpanic']['endsAt'] == alerts_mod.rfc3339(T0 + 340)
    assert alerts['missed_pings']['endsAt'] == alerts_mod.rfc3339(T0 + 100)


def test_the_active_alerts_survive_a_restart(ok, tmp_path):
    am = ok()
    n = failure()
    client(am, tmp_path=tmp_path).send(n)

    again = client(am, tmp_path=tmp_path)
    again.repost()

    assert posted(am)[0]['labels']['uuid'] == UUID
    assert again.send(resolved(n)).kind == OutcomeKind.ACCEPTED
    assert posted(am)[0]['endsAt'] == alerts_mod.rfc3339(T0 + 30)
    assert (tmp_path / 'alerts.json').stat().st_mode & 0o777 == 0o600


def test_an_unreadable_alert_file_starts_empty(tmp_path):
    (tmp_path / 'alerts.json').write_text('{not json')

    c = client('http://127.0.0.1:1', tmp_path=tmp_path)

    assert len(c.alerts) == 0


# -- secrets -------------------------------------------------------------


def test_basic_auth_is_sent_and_the_password_is_never_in_a_message(engine):
    am = engine(http_engine.reply(500, b'echo: s3cret-passw0rd'))
    c = client(am, username='ghm', password='s3cret-passw0rd')

    outcome = c.send(failure())

    assert am.requests[0].headers['Authorization'].startswith('Basic ')
    assert 's3cret-passw0rd' not in outcome.message
    assert 's3cret-passw0rd' not in repr(c)


def test_a_bearer_token_is_sent_and_never_in_a_message(engine):
    am = engine(http_engine.reply(401, b'bad token t0ken-v4lue-1234'))
    c = client(am, bearer_token='t0ken-v4lue-1234')

    outcome = c.send(failure())

    assert am.requests[0].headers['Authorization'] == \
        'Bearer t0ken-v4lue-1234'
    assert outcome.kind == OutcomeKind.RETRY
    assert 't0ken-v4lue-1234' not in outcome.message


# -- options -------------------------------------------------------------


def make_conf(tmp_path, **values):
    conf = cfg.ConfigOpts()
    conf.register_opt(cfg.StrOpt('state_path', default=str(tmp_path)))
    drivers.register_opts(conf)
    alertmanager.register_opts(conf)
    recovery_policy.register_opts(conf)
    conf([])
    conf.set_override('driver', 'alertmanager', 'notifier')
    for name, value in values.items():
        conf.set_override(name, value, 'alertmanager')
    return conf


def test_the_driver_needs_a_url(tmp_path):
    with pytest.raises(ConfigError, match=r'\[alertmanager\] urls'):
        drivers.check_conf(make_conf(tmp_path))


@pytest.mark.parametrize('url, why', [
    ('ftp://am:9093', 'not an http'),
    ('http://user:pw@am:9093', 'carries a password'),
])
def test_a_bad_url_is_refused_at_start_without_its_password(tmp_path, url,
                                                            why):
    with pytest.raises(ConfigError, match=why) as raised:
        alertmanager.check_conf(make_conf(tmp_path, urls=[url]))
    assert ':pw@' not in str(raised.value)


def test_basic_auth_and_a_token_together_are_refused(tmp_path):
    conf = make_conf(tmp_path, urls=['http://am:9093'], username='u',
                     bearer_token='t')
    with pytest.raises(ConfigError, match='bearer_token'):
        alertmanager.check_conf(conf)


def test_a_password_without_a_username_is_refused_unquoted(tmp_path):
    conf = make_conf(tmp_path, password='pw-never-shown-7731')
    with pytest.raises(ConfigError, match=r'\[alertmanager\] password') as e:
        alertmanager.check_conf(conf)
    assert 'pw-never-shown-7731' not in str(e.value)


def test_the_driver_recovers_guests_itself_and_is_told_of_ends(tmp_path):
    conf = make_conf(tmp_path, urls=['http://am:9093'])
    conf.set_override('action', 'reset', 'recovery')

    drivers.check_conf(conf)
    alertmanager.check_conf(conf)
    assert drivers.wants_resolved(conf)
    built = drivers.build_client(conf)
    assert isinstance(built, alertmanager.AlertmanagerClient)
    assert built.alerts.path == str(tmp_path / alerts_mod.FILE_NAME)


def test_the_outcome_is_json_free_of_the_body(ok):
    # The body is compact JSON of a list, as the API wants.
    am = ok()
    client(am).send(failure())
    assert isinstance(json.loads(am.requests[0].body), list)


def test_the_repost_loop_passes_at_once_and_stops_when_told(ok):
    am = ok()
    c = client(am)
    c.send(failure())
    stop = threading.Event()
    passes = []

    def repost():
        passes.append(len(am.requests))
        stop.set()
    c.repost = repost

    c.run(stop)

    assert passes == [1]
