"""The engine client against the real masakari-api: its answers are the
ones the client counts as delivered."""

import socket
import time
import uuid

import pytest
from keystoneauth1 import session as ks_session

from monitor.notify import masakari as notifier
from monitor.notify import notification as notification_mod
from monitor.notify.notification import OutcomeKind

pytestmark = pytest.mark.integration


def test_the_engine_accepts_with_202_and_knows_a_resend_with_409(masakari):
    client = notifier.MasakariClient(ks_session.Session(),
                                     endpoint=masakari.endpoint,
                                     request_timeout=10)
    n = notification_mod.Notification.new(
        str(uuid.uuid4()), 'instance-0000002a', socket.gethostname(),
        time.time())

    first = client.send(n)
    again = client.send(n)

    assert (first.kind, first.status_code) == (OutcomeKind.ACCEPTED, 202)
    assert first.engine_uuid
    assert (again.kind, again.status_code) == (OutcomeKind.DUPLICATE, 409)
    [stored] = masakari.notifications()
    assert stored['notification_uuid'] == first.engine_uuid
