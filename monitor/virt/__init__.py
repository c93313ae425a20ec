"""The libvirt edge: the connection and its events, listing and pinging
domains, bulk stats, guest actions, domain XML and metadata, and the
bridge between native threads (where libvirt blocks) and green ones."""
