"""The broker connection and Home Assistant discovery settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from edge_vlm.config.base import (
    CLIENT_ID_PATTERN,
    CREDENTIAL_NAME_PATTERN,
    ENV_NAME_PATTERN,
    TOPIC_PREFIX_PATTERN,
    StrictModel,
)
from edge_vlm.config.secrets import PasswordSourced
from edge_vlm.config.topic_rules import request_filter_problem

TopicFilter = Annotated[str, Field(min_length=1, max_length=256)]


class TlsConfig(StrictModel):
    enabled: bool = Field(False, description="Connect to the broker over TLS.")
    ca_file: Path | None = Field(
        None, description="CA certificate (PEM) that signed the broker's certificate; "
        "unset = the system's CA store.",
    )
    cert_file: Path | None = Field(None, description="Client certificate (PEM), if the broker asks.")
    key_file: Path | None = Field(None, description="Private key (PEM) of the client certificate.")
    verify_hostname: bool = Field(
        True, description="Check that the broker's certificate names the host we connect to.",
    )

    @model_validator(mode="after")
    def _key_needs_cert(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: set both or neither")
        return self


class MqttConfig(PasswordSourced):
    host: str = Field("127.0.0.1", min_length=1, max_length=253, description="Broker host name or IP.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 is usual for TLS).")
    client_id: str | None = Field(
        None, min_length=1, max_length=64, pattern=CLIENT_ID_PATTERN,
        description="MQTT client id; default edge_vlm_<node_id>. Must be unique on the broker.",
    )
    username: str | None = Field(None, min_length=1, max_length=256, description="Broker user name.")
    password_env: str | None = Field(
        None, pattern=ENV_NAME_PATTERN,
        description="Name of the environment variable that holds the broker password "
        "(the password itself never goes in this file).",
    )
    password_credential: str | None = Field(
        None, pattern=CREDENTIAL_NAME_PATTERN,
        description="Name of the systemd credential that holds the broker password: the file "
        "$CREDENTIALS_DIRECTORY/<name>, from LoadCredential=<name>:/path in the unit. Instead of password_env.",
    )
    protocol: Literal["3.1.1", "5"] = Field(
        "5", description='MQTT protocol version: "5" or "3.1.1".',
    )
    keepalive: int = Field(60, ge=5, le=3600, description="Keep-alive interval, seconds.")
    tls: TlsConfig = Field(default_factory=TlsConfig, description="TLS settings.")
    reconnect_min_delay: int = Field(
        1, ge=1, le=60, description="First wait before reconnecting, seconds (doubles each try).",
    )
    reconnect_max_delay: int = Field(
        10, ge=1, le=600, description="Longest wait between reconnect attempts, seconds.",
    )
    shared_group: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Share requests and Frigate events with the other boards of this group "
        "(MQTT shared subscriptions, $share/<group>/...): the broker gives each to one board.",
    )
    max_queued_messages: int = Field(
        500, ge=10, le=100_000,
        description="Results and events kept for delivery while the broker is unreachable or has not "
        "acknowledged the messages before them; beyond this the oldest are dropped, counted in the diagnostics "
        "(outbox_dropped). Retained states are not counted: only the newest of each is kept.",
    )
    max_unacked_messages: int = Field(
        100, ge=10, le=10_000,
        description="Messages handed to the broker and not acknowledged yet, at most (and 16 MB of them); "
        "the rest wait here under max_queued_messages, so a broker that stops acknowledging costs bounded "
        "memory.",
    )
    ack_timeout_s: int = Field(
        10, ge=5, le=600,
        description="A broker that acknowledges none of our messages for this long while connected is "
        "reconnected to, once nothing has come in for a second (at the latest after four times this): "
        "mosquitto drops even acknowledgements for a client whose queue is full. Counted in the "
        "diagnostics (broker_ack_timeouts).",
    )

    reply_topics: list[TopicFilter] | None = Field(
        None, max_length=32,
        description="MQTT topic filters a request's reply topic (reply_to, or the MQTT 5 response topic) must "
        "match; a request naming any other is answered on <base_topic>/response with the error bad_reply_topic. "
        "Unset: <base_topic>/response/#, a subtree of its own. Never $ topics, homeassistant/…, or the daemon's "
        "own state and command topics (a reply there would be taken for one of them).",
    )
    image_topics: list[TopicFilter] | None = Field(
        None, max_length=32,
        description="MQTT topic filters a request's image_topic must match (the daemon reads that topic's "
        "retained message with its own broker rights); others are refused with bad_image_topic. Unset: "
        "<base_topic>/images/#. The cameras' snapshot topics (<base_topic>/<camera>/snapshot and their "
        "snapshot_topics) are always allowed: the daemon reads them anyway. Never $ topics or homeassistant/….",
    )

    @field_validator("reply_topics", "image_topics")
    @classmethod
    def _request_filters(cls, filters: list[str] | None) -> list[str] | None:
        for topic_filter in filters or []:
            if problem := request_filter_problem(topic_filter):
                raise ValueError(f"{topic_filter!r}: {problem}")
        return filters

    @field_validator("host")
    @classmethod
    def _host_name(cls, host: str) -> str:
        # A name Python cannot even encode for the resolver (an empty or over-long label) would not
        # fail like an unknown one: it would stop paho's network thread for good.
        labels = host.rstrip(".").split(".")
        if ":" not in host and (any(c.isspace() for c in host) or not all(0 < len(x) <= 63 for x in labels)):
            raise ValueError("not a host name or IP address (labels of 1 to 63 characters, no spaces)")
        return host

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_as_text(cls, value: Any) -> Any:
        # YAML reads `protocol: 5` as an int; accept it rather than make users quote it.
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _delays_ordered(self) -> MqttConfig:
        if self.reconnect_max_delay < self.reconnect_min_delay:
            raise ValueError("reconnect_max_delay must be at least reconnect_min_delay")
        return self


class DiscoveryConfig(StrictModel):
    enabled: bool = Field(True, description="Announce entities with Home Assistant MQTT discovery.")
    prefix: str = Field(
        "homeassistant", pattern=TOPIC_PREFIX_PATTERN,
        description="Home Assistant's discovery prefix.",
    )
    ha_status_topic: str = Field(
        "homeassistant/status", pattern=TOPIC_PREFIX_PATTERN,
        description="Where Home Assistant publishes online/offline; on online we announce again.",
    )
