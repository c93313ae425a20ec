"""Notifications: the value, the durable outbox, the delivery worker, and
the clients of the HA engine (Masakari) and the webhook over one HTTP
edge."""
