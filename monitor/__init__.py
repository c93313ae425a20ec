"""guest-health-monitor: a host-side VM health monitor for OpenStack-style clouds."""

import warnings

# eventlet announces its maintenance mode when first imported, which every
# entry point does (the daemon, the outbox tool, option loading). Operators
# cannot act on it, so keep it out of their terminals and logs. Set here so
# it is in place before any module of the package imports eventlet.
warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
