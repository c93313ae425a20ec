"""Pure health policy: the state machine, what a ping, a libvirt event or a
round of results means for a domain, the mass-failure breaker, guest
activity and the recovery budget. No I/O and no libvirt here: values in,
decisions out."""
