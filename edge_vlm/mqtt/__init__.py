"""MQTT, the transport only: the broker connection, the inbox its callbacks fill, TLS, and what
the broker's refusals and connect failures mean."""
