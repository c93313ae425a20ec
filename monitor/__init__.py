"""guest-health-monitor: a host-side VM health monitor for OpenStack-style clouds."""
