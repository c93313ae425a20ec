"""Entry points: the daemon and its two tools (``guest-health-monitor``,
``guest-health-monitor-status``, ``guest-health-monitor-outbox``)."""
