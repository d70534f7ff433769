"""paho's client, set up before its first connect the way a long-lived service needs it.

MQTT 5 or 3.1.1 with a clean session each time, the last will (``offline``, retained) on our status
topic, the credentials, TLS, paho's reconnect delays, and no bound of paho's own on what waits.
"""

from __future__ import annotations

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edge_vlm.config.mqtt import MqttConfig
from edge_vlm.mqtt.tls import client_context

ONLINE = b"online"
OFFLINE = b"offline"


def new_client(config: MqttConfig, client_id: str, password: str | None, status_topic: str) -> paho.Client:
    v5 = config.protocol == "5"
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        # A clean session each time (MQTT 5: clean_start on every connect, in MqttConnection.start): after
        # an outage we subscribe again rather than receive a backlog of stale snapshots.
        clean_session=None if v5 else True,
    )
    client.will_set(status_topic, OFFLINE, qos=1, retain=True)
    if config.username is not None:
        client.username_pw_set(config.username, password)
    tls = config.tls
    if tls.enabled:
        client.tls_set_context(client_context(tls))
        client.tls_insecure_set(not tls.verify_hostname)  # else paho checks the name itself too
    client.reconnect_delay_set(config.reconnect_min_delay, config.reconnect_max_delay)
    # paho's own queue is unbounded: the Publisher bounds what waits while we are disconnected
    # (paho's bound would also refuse "online" and discovery, which must never be dropped).
    client.max_queued_messages_set(0)
    return client
