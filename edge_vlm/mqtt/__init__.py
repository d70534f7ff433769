"""MQTT: the broker connection, our topics, and the messages built for them."""
