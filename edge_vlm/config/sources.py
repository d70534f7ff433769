"""Where a camera's frames come from, and what makes it describe one by itself."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from edge_vlm.config.automation import PromptText
from edge_vlm.config.base import CREDENTIAL_NAME_PATTERN, ENV_NAME_PATTERN, StrictModel
from edge_vlm.config.secrets import PasswordSourced
from edge_vlm.core.redact import holds_password


class MqttSourceConfig(StrictModel):
    type: Literal["mqtt"] = Field(
        "mqtt", description="mqtt: a trigger describes the last snapshot received for the camera.",
    )
    max_frame_age_s: float | None = Field(
        None, gt=0, le=86_400, description="Refuse to describe a last snapshot older than this; unset: any age.",
    )


class RtspSourceConfig(PasswordSourced):
    type: Literal["rtsp"] = Field(description="rtsp: frames from the camera's RTSP stream, read with OpenCV.")
    url: str = Field(min_length=8, max_length=2048, description="rtsp://host:port/path, without a password: "
                     "that goes in password_credential or password_env, with username.")
    username: str | None = Field(None, min_length=1, max_length=256, description="User name for the stream.")
    password_env: str | None = Field(
        None, pattern=ENV_NAME_PATTERN, description="Environment variable holding the stream's password.",
    )
    password_credential: str | None = Field(
        None, pattern=CREDENTIAL_NAME_PATTERN, description="systemd credential ($CREDENTIALS_DIRECTORY/<name>, "
        "from LoadCredential=) holding the stream's password; instead of password_env.",
    )
    mode: Literal["persistent", "on_demand"] = Field(
        "persistent", description="persistent: stay connected, keep the newest frame (instant, costs CPU "
        "all the time; needed for motion). on_demand: connect on each trigger, catch up to the live "
        "edge, take one frame, disconnect.",
    )
    transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport.")
    fast_probe: bool = Field(
        True, description="Open with minimal stream probing (about 0.1 s instead of about 2 s); turn off "
        "if a camera's stream does not open, as some need the full probe.",
    )
    open_timeout_s: float = Field(5.0, ge=0.5, le=60, description="Give up connecting after this.")
    read_timeout_s: float = Field(
        5.0, ge=0.5, le=60, description="A stream that sends nothing for this long is reconnected.",
    )
    max_frame_age_s: float = Field(
        2.0, gt=0, le=3600, description="A frame older than this is never described as current.",
    )
    reconnect_max_delay_s: float = Field(
        30.0, ge=1, le=3600, description="Longest wait between reconnect attempts (doubles from 1 s).",
    )

    @field_validator("url")
    @classmethod
    def _rtsp_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("rtsp", "rtsps") or not parts.hostname:
            raise ValueError("expected rtsp://host[:port]/path")
        if holds_password(url):
            raise ValueError("a password inside the URL can be read by anyone who reads this file or a copy of it: "
                             "remove user:password@ from the URL, give the user in username and the "
                             "password in password_credential (a systemd credential) or password_env")
        return url

    @model_validator(mode="after")
    def _password_needs_user(self) -> RtspSourceConfig:
        source = "password_env" if self.password_env is not None else "password_credential"
        if (self.password_env or self.password_credential) is not None and self.username is None:
            raise ValueError(f"{source} needs username")
        return self


class HttpSourceConfig(PasswordSourced):
    type: Literal["http"] = Field(description="http: the camera's snapshot URL (or Frigate's latest.jpg).")
    url: str = Field(min_length=8, max_length=2048, description="http(s)://... returning a JPEG or PNG.")
    auth: Literal["none", "basic", "digest", "bearer"] = Field("none", description="How to authenticate.")
    username: str | None = Field(None, min_length=1, max_length=256, description="User for basic/digest.")
    password_env: str | None = Field(
        None, pattern=ENV_NAME_PATTERN, description="Environment variable holding the password or token.",
    )
    password_credential: str | None = Field(
        None, pattern=CREDENTIAL_NAME_PATTERN, description="systemd credential ($CREDENTIALS_DIRECTORY/<name>, "
        "from LoadCredential=) holding the password or token; instead of password_env.",
    )
    timeout_s: float = Field(5.0, ge=0.5, le=120, description="Give up on a snapshot after this.")
    verify_tls: bool = Field(True, description="Check the server's certificate for https URLs.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected http(s)://host[:port]/path")
        if holds_password(url) or parts.username:
            raise ValueError("put credentials in username and password_credential (a systemd credential) or "
                             "password_env, not in the URL")
        return url

    @model_validator(mode="after")
    def _auth_complete(self) -> HttpSourceConfig:
        secret = self.password_env is not None or self.password_credential is not None
        if self.auth in ("basic", "digest") and (self.username is None or not secret):
            raise ValueError(f"auth {self.auth} needs username and password_env (or password_credential)")
        if self.auth == "bearer" and not secret:
            raise ValueError("auth bearer needs password_env (the variable holding the token) or password_credential")
        return self


def _source_type(value: Any) -> str:
    return str(value.get("type", "mqtt") if isinstance(value, dict) else getattr(value, "type", ""))


SourceConfig = Annotated[
    Annotated[MqttSourceConfig, Tag("mqtt")] | Annotated[RtspSourceConfig, Tag("rtsp")]
    | Annotated[HttpSourceConfig, Tag("http")],
    Discriminator(_source_type),
]


# The small grey picture kept with each frame of a clip buffer (edge_vlm.ingest.motion: WIDTH x WIDTH at most).
THUMB_BYTES = 160 * 160


class ClipConfig(StrictModel):
    seconds: float = Field(10.0, gt=0, le=60, description="Seconds before a trigger kept for a clip.")
    fps: float = Field(2.0, gt=0, le=10, description="Frames kept per second at most (an http source is "
                       "polled this often; mqtt snapshots are kept as they come, at most this often).")
    long_side: int = Field(640, ge=160, le=1920, description="Kept frames are scaled down to this long side.")
    frames: int = Field(4, ge=2, le=9, description="Key frames in a clip's image (a grid, read in one pass).")
    default: bool = Field(False, description="Every trigger, request and motion episode of this camera asks "
                          "for a clip unless it says otherwise.")

    @property
    def capacity(self) -> int:
        """The most frames a buffer keeps: ``seconds`` of them at ``fps``, and the one at their start."""
        return math.ceil(self.seconds * self.fps) + 1

    @property
    def most_bytes(self) -> int:
        """The most a camera's buffer holds (edge_vlm.frames.buffer): ``capacity`` frames, each no
        larger than a square frame of ``long_side`` as raw RGB (a JPEG of a camera frame is far
        smaller), with motion detection's small grey picture."""
        return self.capacity * (self.long_side * self.long_side * 3 + THUMB_BYTES)


class MotionConfig(StrictModel):
    enabled: bool = Field(False, description="Describe by itself when the camera sees motion (persistent "
                          "RTSP sources only); Home Assistant can switch it at run time.")
    min_area: float = Field(0.01, gt=0, lt=1, description="Share of the frame that must change to count.")
    min_duration_s: float = Field(0.5, ge=0, le=60, description="Motion must last this long to start an episode.")
    cooldown_s: float = Field(30.0, ge=0, le=86_400, description="At least this long between two motion "
                              "descriptions of the camera.")
    quiet_s: float = Field(2.0, ge=0.1, le=600, description="An episode ends after this long without motion.")
    sample_fps: float = Field(5.0, gt=0, le=30, description="Frames per second compared (cost grows with it).")
    ignore: list[tuple[float, float, float, float]] = Field(
        default_factory=list, max_length=16,
        description="Areas where change is not motion (a clock overlay, a swaying tree): [left, top, right, "
        "bottom] as fractions of the frame, e.g. [0, 0, 1, 0.1] for the top tenth.",
    )

    @field_validator("ignore")
    @classmethod
    def _areas_valid(cls, areas: list[tuple[float, float, float, float]]) -> list[tuple[float, float, float, float]]:
        for left, top, right, bottom in areas:
            if not (0 <= left < right <= 1 and 0 <= top < bottom <= 1):
                raise ValueError(f"[{left}, {top}, {right}, {bottom}]: need 0 <= left < right <= 1 and "
                                 "0 <= top < bottom <= 1")
        return areas


class FrigateCameraConfig(StrictModel):
    camera: str | None = Field(None, min_length=1, max_length=64,
                               description="Frigate's name of this camera; default: the camera id.")
    labels: list[str] = Field(default_factory=list, description="Only these labels; empty: all.")
    zones: list[str] = Field(default_factory=list, description="Only objects in one of these zones; empty: anywhere.")
    min_score: float = Field(0.0, ge=0, le=1, description="Only objects with at least this top score.")
    event_types: list[Literal["new", "update", "end"]] = Field(
        ["new", "update"], min_length=1, description="Which of Frigate's event messages may start a "
        "description; each event is described once, on its first message that passes the filters (a new "
        "event often has no zone yet, an update has).",
    )
    snapshot: Literal["mqtt", "http"] = Field(
        "mqtt", description="mqtt: Frigate's retained <prefix>/<camera>/<label>/snapshot; http: the event's "
        "snapshot from Frigate's API (frigate.api_url).",
    )
    prompts: dict[str, PromptText] = Field(
        default_factory=dict, description="Prompt per label ('default' for the others), instead of the "
        "camera's profile; placeholders {label}, {sub_label}, {zones}, {camera}, {time}, {span}, {previous}, "
        "{language}.",
    )
    name_wait_s: float = Field(
        0, ge=0, le=60, description="When the object has no recognised name yet (Frigate's sub_label: a face, "
        "a known plate; else the plate read), wait up to this long for an update that brings one before "
        "describing, so that {sub_label} has it; 0: describe at once.",
    )
    again_when_named: bool = Field(
        False, description="When an event was described before a name was recognised (a face, a plate), "
        "describe it again when one comes: the same id, an update of the same result (its event.revision 1).",
    )
    include_stationary: bool = Field(
        False, description="Also describe an object that is stationary or has never moved (a parked car), "
        "which Frigate's own review items leave out.",
    )
    reviews: list[Literal["alert", "detection"]] = Field(
        default_factory=list, description="Describe Frigate's review items (0.14+) of these severities "
        "instead of each event: [alert], or [alert, detection]; one result per review item, described "
        "again as it grows (another object, a recognised name, detection becoming alert); needs "
        "frigate.api_url. Empty: events.",
    )
    clip: bool = Field(
        False, description="Describe each event (or review item) as a clip: the camera's kept seconds before "
        "its snapshot, and the snapshot as the last frame; needs the camera's clip.",
    )

    def overlaps(self, other: FrigateCameraConfig) -> bool:
        """Whether an event could pass both filters: their labels meet (an empty list takes all).
        Zones cannot keep two apart: an object may enter both, and a filter takes entered zones too."""
        return not self.labels or not other.labels or bool(set(self.labels) & set(other.labels))

    @model_validator(mode="after")
    def _a_name_comes_in_an_update(self) -> FrigateCameraConfig:
        if self.name_wait_s and "update" not in self.event_types:
            raise ValueError("name_wait_s waits for an update that brings a name: event_types must include update")
        if self.reviews and (self.name_wait_s or self.again_when_named):
            raise ValueError("name_wait_s and again_when_named are for events: a review item is described again "
                             "when a name comes anyway")
        return self


class FrigateConfig(PasswordSourced):
    enabled: bool = Field(False, description="Describe Frigate's events (see cameras[].frigate).")
    topic_prefix: str = Field("frigate", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$",
                              description="Frigate's MQTT topic prefix.")
    api_url: str | None = Field(None, description="Frigate's address for event snapshots, e.g. http://frigate:5000.")
    write_descriptions: bool = Field(
        False, description="Write each event's description to it in Frigate (0.15+: shown in Explore, used by "
        "its search), once the event has ended; needs api_url.",
    )
    username: str | None = Field(None, min_length=1, max_length=256, description="Frigate's user, for its "
                                 "authenticated port (8971); its internal port (5000) needs none.")
    password_env: str | None = Field(
        None, pattern=ENV_NAME_PATTERN, description="Environment variable holding the Frigate user's password.",
    )
    password_credential: str | None = Field(
        None, pattern=CREDENTIAL_NAME_PATTERN, description="systemd credential holding the Frigate user's password; "
        "instead of password_env.",
    )

    @model_validator(mode="after")
    def _writing_needs_the_api(self) -> FrigateConfig:
        if self.write_descriptions and self.api_url is None:
            raise ValueError("frigate.write_descriptions needs frigate.api_url")
        if ((self.password_env or self.password_credential) is None) != (self.username is None):
            raise ValueError("frigate.username and its password (password_credential or password_env) go together")
        return self

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, url: str | None) -> str | None:
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("expected http(s)://host[:port]")
            if parts.username or parts.password:
                raise ValueError("Frigate's API takes no credentials in the URL")
        return url
