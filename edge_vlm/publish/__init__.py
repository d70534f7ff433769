"""Publish: what becomes of each job and input (``outcomes``), as messages (``messages``) through
the one ordered, bounded outbox (``publisher``); alerts, diagnostics, Home Assistant discovery,
and the dispatcher thread that serves the MQTT session (``session``)."""
