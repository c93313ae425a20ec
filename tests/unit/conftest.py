# Importing some of eventlet's green modules (eventlet.green.http.client,
# eventlet.wsgi) re-imports standard library modules with green sockets
# and threads, and leaves the green copy as the attribute of its package:
# after that, ``http.server`` names a copy whose socketserver waits on
# eventlet's hub. The test HTTP servers run on plain threads, so they are
# defined here, before any test module brings in a green module.
from tests.unit import http_engine  # noqa: F401
