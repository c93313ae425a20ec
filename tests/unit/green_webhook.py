"""One webhook attempt the way the daemon makes it: in a green thread after
the daemon's monkey-patching, by the client alone or by the delivery
worker from an outbox. Prints the outcome, how long the attempt took and
the outbox entry after it, as JSON.

    python -m tests.unit.green_webhook client|worker URL TIMEOUT OUTBOX

Run as its own process by the tests: monkey-patching the test runner would
change every other test.
"""

from monitor import concurrency

concurrency.monkey_patch()

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from monitor.notify import delivery  # noqa: E402
from monitor.notify import notification  # noqa: E402
from monitor.notify import outbox as outbox_mod  # noqa: E402
from monitor.notify import webhook  # noqa: E402

SECRET = 'whsec_' + 'QUJD' * 8


def attempt(how, url, timeout, path):
    client = webhook.WebhookClient(url, SECRET, timeout=float(timeout))
    n = notification.Notification.new(
        '6f1f4b4e-95c5-4c6a-9a43-1c1bb8d0a0f1', 'instance-0000002a',
        'compute-1', 1700000000.0)
    box = outbox_mod.Outbox(path, max_size=10)
    box.enqueue(n, now=time.time())
    start = time.monotonic()
    if how == 'client':
        outcome = client.send(n)
    else:
        worker = delivery.DeliveryWorker(box, client)
        [(_entry, outcome)] = worker.run_once()
    took = time.monotonic() - start
    entry = box.get(n.id)
    box.close()
    return {'outcome': outcome._asdict(), 'seconds': took,
            'status': entry.status, 'attempts': entry.attempts,
            'last_error': entry.last_error}


def main(how, url, timeout, path):
    result = concurrency.spawn(attempt, how, url, timeout, path).wait()
    print(json.dumps(result))


if __name__ == '__main__':
    main(*sys.argv[1:])
