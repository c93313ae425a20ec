"""Send one notification to ``URL`` the way the daemon does: in a green
thread after the daemon's monkey-patching. Prints the outcome as JSON.

    python -m tests.unit.green_send URL REQUEST_TIMEOUT

Run as its own process by the tests: monkey-patching the test runner would
change every other test.
"""

from monitor import concurrency

concurrency.monkey_patch()

import json  # noqa: E402
import sys  # noqa: E402

from keystoneauth1 import session as ks_session  # noqa: E402

from monitor.notify import masakari as notifier  # noqa: E402
from monitor.notify import notification  # noqa: E402


def main(url, request_timeout):
    client = notifier.MasakariClient(ks_session.Session(), endpoint=url,
                                     request_timeout=float(request_timeout))
    n = notification.Notification.new(
        '6f1f4b4e-95c5-4c6a-9a43-1c1bb8d0a0f1', 'instance-0000002a',
        'compute-1', 1700000000.0)
    outcome = concurrency.spawn(client.send, n).wait()
    print(json.dumps(outcome._asdict()))


if __name__ == '__main__':
    main(*sys.argv[1:])
