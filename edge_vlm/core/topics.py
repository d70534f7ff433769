"""Our topic names, in one place, and the outbound message value."""

from __future__ import annotations

from dataclasses import dataclass

from edge_vlm.config.models import AppConfig

# What a camera's topics end with.
SNAPSHOT = "snapshot"
TRIGGER = "trigger"
DESCRIPTION = "description"
ATTRIBUTES = "attributes"
RESULT = "result"
IMAGE = "image"  # the frame being described (from its "pending")
DESCRIBED_IMAGE = "described_image"  # the frame of the last description
ERROR = "error"
STREAM = "stream"  # ON / OFF: the camera's stream is connected
MOTION = "motion"  # ON / OFF: the motion trigger is on; commands on motion/set
EVENT = "event"  # a description's life: pending, then described / failed / superseded
ALERTS = "alerts"  # Home Assistant event entity: one event per alert sent
FIELDS = "fields"  # the last structured answer, retained
CONFIGURED = "configured"  # the file's values Home Assistant's settings were stored under, retained


@dataclass(frozen=True)
class Outbound:
    """One message to publish (QoS 1)."""

    topic: str
    payload: bytes
    retain: bool
    correlation: bytes | None = None  # MQTT 5 correlation data, echoed in a reply
    asked: bool = False  # an event someone waits for (a trigger's, a request's): dropped last


@dataclass(frozen=True)
class Topics:
    base: str
    node: str
    discovery_prefix: str

    @classmethod
    def from_config(cls, config: AppConfig) -> Topics:
        return cls(config.base_topic, config.node_id, config.discovery.prefix)

    @property
    def status(self) -> str:
        """online / offline, retained; the last will."""
        return f"{self.base}/{self.node}/status"

    @property
    def diagnostics(self) -> str:
        return f"{self.base}/{self.node}/diagnostics"

    @property
    def sync(self) -> str:
        """We publish here after subscribing; its coming back tells the retained replay is over."""
        return f"{self.base}/{self.node}/sync"

    @property
    def model(self) -> str:
        """Whether the model is ready, retained."""
        return f"{self.base}/{self.node}/model"

    def camera(self, camera: str, leaf: str) -> str:
        return f"{self.base}/{camera}/{leaf}"

    def alert(self, camera: str, rule: str) -> str:
        return f"{self.base}/{camera}/alert/{rule}"

    @property
    def request(self) -> str:
        """Ask anything: JSON requests, answered on their response topic."""
        return f"{self.base}/request"

    @property
    def default_response(self) -> str:
        """Where an answer goes when its request named no response topic."""
        return f"{self.base}/response"

    def any_camera(self, leaf: str) -> str:
        """Subscription filter for ``leaf`` of every camera, known or not (unknown ones get an error)."""
        return f"{self.base}/+/{leaf}"

    def camera_of(self, topic: str, leaf: str) -> str | None:
        """The camera id in ``<base>/<camera>/<leaf>``, or None if ``topic`` is not of that form."""
        prefix, suffix = f"{self.base}/", f"/{leaf}"
        if topic.startswith(prefix) and topic.endswith(suffix):
            camera = topic[len(prefix) : -len(suffix)]
            if camera and "/" not in camera:
                return camera
        return None

    @property
    def discovery_node(self) -> str:
        """The discovery node id that groups all our devices."""
        return f"edge_vlm_{self.node}"

    @property
    def node_device_config(self) -> str:
        return f"{self.discovery_prefix}/device/{self.discovery_node}/config"

    def camera_device_config(self, camera: str) -> str:
        return f"{self.discovery_prefix}/device/{self.discovery_node}/{camera}/config"

    @property
    def any_camera_device_config(self) -> str:
        return self.camera_device_config("+")
