"""The engine client under the real delivery worker and a real outbox:
what an engine that redirects does to a pending notification."""

import logging

from keystoneauth1 import session as ks_session

from monitor.notify import masakari as notifier
from monitor.notify import notification as notification_mod
from monitor.notify.delivery import DeliveryWorker
from monitor.notify.delivery import RetryPolicy
from monitor.notify.notification import OutcomeKind
from monitor.notify.outbox import Outbox
from tests.unit import http_engine
from tests.unit.http_engine import Response


def notification():
    return notification_mod.Notification.new(
        instance_uuid='6f1f4b4e-95c5-4c6a-9a43-1c1bb8d0a0f1',
        domain_name='instance-0000002a', hostname='compute-1',
        at=1700000000.0)


def test_a_redirect_keeps_the_notification_pending_until_the_engine_accepts(
        tmp_path, caplog):
    caplog.set_level(logging.INFO, logger='monitor.notify.delivery')
    n = notification()
    with http_engine.HTTPServer(http_engine.reply(202, {})) as elsewhere, \
            http_engine.HTTPServer(http_engine.script(
                Response(302, b'', {'Location': elsewhere.url + '/v1'}),
                Response(202, {'notification': {
                    'notification_uuid': 'engine-1'}}))) as engine:
        client = notifier.MasakariClient(ks_session.Session(),
                                         endpoint=engine.url + '/v1')
        outbox = Outbox(str(tmp_path / 'outbox.sqlite'), max_size=10)
        worker = DeliveryWorker(
            outbox, client, retry_policy=RetryPolicy(initial_delay=1.0, jitter=0.0))
        outbox.enqueue(n, 100.0)

        [(retrying, first)] = worker.run_once(now=100.0)
        outage_messages = [r.getMessage() for r in caplog.records
                         if r.levelno == logging.ERROR]
        [(sent, second)] = worker.run_once(now=200.0)
        later = worker.run_once(now=1000.0)
        pending = outbox.pending()
        delivered = outbox.get(n.id)
        outbox.close()

    assert (first.kind, first.status_code) == (OutcomeKind.RETRY, 302)
    assert (retrying.status, retrying.attempts) == ('pending', 1)
    assert any(elsewhere.url in m and 'HTTP 302' in m
               for m in outage_messages)
    assert second.kind == OutcomeKind.ACCEPTED
    assert (sent.status, sent.attempts) == ('delivered', 2)
    assert later == [] and pending == []
    assert len(engine.requests) == 2
    assert (delivered.status, delivered.attempts) == ('delivered', 2)
    assert elsewhere.requests == []
