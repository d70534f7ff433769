"""The top of the configuration file's schema: AppConfig, the backend it picks, and its small sections.

pydantic v2 models, every field bounded and described. A camera's settings are in
``edge_vlm.config.camera``, each backend's in ``edge_vlm.config.opencv`` and ``edge_vlm.config.vlm``.
Validators here are pure: they look only at the values. Whether a file exists or an environment
variable is set is checked at start-up by ``edge_vlm.config.preflight``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

from edge_vlm.config.automation import OPENCV_DETAILS, ProfileConfig, PromptText
from edge_vlm.config.base import DEFAULT_PROMPT, ID_PATTERN, TOPIC_PREFIX_PATTERN, LogLevel, StrictModel
from edge_vlm.config.camera import CameraConfig
from edge_vlm.config.http_api import HttpApiConfig
from edge_vlm.config.mqtt import DiscoveryConfig, MqttConfig
from edge_vlm.config.opencv import OpencvBackendConfig
from edge_vlm.config.prompt_text import build_prompt
from edge_vlm.config.sources import FrigateCameraConfig, FrigateConfig
from edge_vlm.config.topic_rules import (
    covers_our_topic,
    filter_matches,
    filters_overlap,
    our_input_topics,
    our_output_topics,
    takes_frigate_snapshots,
)
from edge_vlm.config.vlm import VlmBackendConfig, context_problem

# The schema's names are imported from here; CameraConfig and OpencvBackendConfig are defined in modules of their own.
__all__ = [
    "AppConfig",
    "BackendConfig",
    "CameraConfig",
    "DiagnosticsConfig",
    "LimitsConfig",
    "LoggingConfig",
    "OpencvBackendConfig",
]


def _backend_type(value: Any) -> str:
    # `type` may be left out for the default backend.
    return str(value.get("type", "opencv") if isinstance(value, dict) else getattr(value, "type", ""))


BackendConfig = Annotated[
    Annotated[OpencvBackendConfig, Tag("opencv")] | Annotated[VlmBackendConfig, Tag("vlm")],
    Discriminator(_backend_type),
]


class LimitsConfig(StrictModel):
    max_image_pixels: int = Field(
        40_000_000, ge=10_000, le=170_000_000,
        description="Images with more pixels than this are refused before decoding (Pillow refuses "
        "anything over 179 megapixels as a decompression bomb anyway).",
    )
    max_payload_bytes: int = Field(
        25_000_000, ge=10_000, le=256_000_000, description="Snapshot payloads larger than this are refused.",
    )
    max_published_image_bytes: int = Field(
        2_000_000, ge=10_000, le=50_000_000,
        description="A snapshot JPEG up to this size is republished as is on the image topic; a larger "
        "one (or a PNG) is re-encoded from the decoded frame.",
    )
    inbound_queue: int = Field(
        64, ge=4, le=10_000,
        description="Incoming MQTT messages waiting to be handled; when full the oldest is dropped "
        "with a warning.",
    )
    inbound_queue_mb: int = Field(
        64, ge=4, le=4096, description="The same bound in megabytes of waiting payloads.",
    )


class DiagnosticsConfig(StrictModel):
    interval_s: float = Field(
        30, ge=1, le=3600,
        description="Publish the diagnostics (counters, NPU load, SoC temperature, memory) at least this often, "
        "so Home Assistant's board sensors stay current while nothing happens. Events publish them sooner, "
        "at most once a second.",
    )


class LoggingConfig(StrictModel):
    level: LogLevel = Field("INFO", description="Log level of the daemon.")
    modules: dict[str, LogLevel] = Field(
        default_factory=dict, description="Per-module levels, e.g. {edge_vlm.mqtt: DEBUG}.",
    )


class AppConfig(StrictModel):
    node_id: str = Field(
        "board", pattern=ID_PATTERN,
        description="This daemon's id: its status topic and Home Assistant device. Give each board "
        "sharing a broker its own.",
    )
    base_topic: str = Field("edge_vlm", pattern=TOPIC_PREFIX_PATTERN, description="Prefix of all our topics.")
    prompt: PromptText = Field(
        DEFAULT_PROMPT, min_length=1, max_length=4000,
        description="The 'default' profile's prompt, unless profiles defines one.",
    )
    language: str | None = Field(
        None, min_length=2, max_length=32, description="Ask for answers in this language, e.g. German; "
        "unset: the model's own (usually English). Also the {language} placeholder.",
    )
    profiles: dict[str, ProfileConfig] = Field(
        default_factory=dict, max_length=32, description="Named prompts; a camera picks one, a trigger may too.",
    )
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Broker connection.")
    discovery: DiscoveryConfig = Field(default_factory=DiscoveryConfig, description="Home Assistant discovery.")
    frigate: FrigateConfig = Field(default_factory=FrigateConfig, description="Frigate's events.")
    backend: BackendConfig = Field(
        default_factory=OpencvBackendConfig, validate_default=True,
        description="What turns a frame into text: opencv (built in, the default) or vlm (NPU models).",
    )
    cameras: list[CameraConfig] = Field(min_length=1, max_length=64, description="The cameras.")
    limits: LimitsConfig = Field(default_factory=LimitsConfig, description="Input and queue limits.")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Log levels.")
    http: HttpApiConfig = Field(
        default_factory=HttpApiConfig, description="The Ollama and OpenAI compatible HTTP API (off by default).",
    )
    diagnostics: DiagnosticsConfig = Field(
        default_factory=DiagnosticsConfig, description="The daemon's diagnostics on <base>/<node>/diagnostics.",
    )

    @field_validator("profiles")
    @classmethod
    def _profile_names(cls, profiles: dict[str, ProfileConfig]) -> dict[str, ProfileConfig]:
        for name in profiles:
            if not re.match(ID_PATTERN, name):
                raise ValueError(f"{name!r}: profile names are lower-case letters, digits, _ and -")
        return profiles

    @field_validator("backend")
    @classmethod
    def _profiles_fit_the_backend(cls, backend: OpencvBackendConfig | VlmBackendConfig,
                                  info: ValidationInfo) -> OpencvBackendConfig | VlmBackendConfig:
        language = info.data.get("language")
        profiles: dict[str, ProfileConfig] = info.data.get("profiles") or {}
        prompts = {"the default prompt": build_prompt(ProfileConfig(prompt=info.data.get("prompt", "?")), {}, language)}
        prompts.update({f"profiles.{name}.prompt": build_prompt(p, {}, language) for name, p in profiles.items()})
        for where, prompt in prompts.items():
            if isinstance(backend, VlmBackendConfig) and (problem := context_problem(backend, prompt)):
                raise ValueError(f"{where}: {problem}")
        structured = [name for name, p in profiles.items() if p.structured]
        if isinstance(backend, OpencvBackendConfig) and structured:
            raise ValueError(f"profiles {structured} ask for JSON answers, which only the vlm backend gives")
        return backend

    @field_validator("cameras")
    @classmethod
    def _camera_ids_unique(cls, cameras: list[CameraConfig], info: ValidationInfo) -> list[CameraConfig]:
        first: dict[str, int] = {}
        for index, camera in enumerate(cameras):
            if camera.id in first:
                raise ValueError(
                    f"camera id {camera.id!r} is used twice: cameras[{first[camera.id]}] and cameras[{index}]",
                )
            if camera.id == info.data.get("node_id"):
                raise ValueError(f"camera id {camera.id!r} equals node_id: their topics would collide")
            backend = info.data.get("backend")
            prompt = camera.prompt and build_prompt(ProfileConfig(prompt=camera.prompt), {}, info.data.get("language"))
            if isinstance(backend, VlmBackendConfig) and (problem := context_problem(backend, prompt)):
                raise ValueError(f"cameras[{index}].prompt: {problem}")
            if camera.profile is not None and camera.profile != "default" \
                    and camera.profile not in (info.data.get("profiles") or {}):
                raise ValueError(f"cameras[{index}].profile: no profile {camera.profile!r} in profiles")
            if isinstance(backend, OpencvBackendConfig) and any(a.question for a in camera.alerts):
                raise ValueError(f"cameras[{index}].alerts: questions need the vlm backend (opencv answers none)")
            first[camera.id] = index
        if "base_topic" in info.data and "node_id" in info.data and "discovery" in info.data:
            ours = our_output_topics(info.data["base_topic"], info.data["node_id"],
                                     info.data["discovery"].prefix, [c.id for c in cameras])
            for index, camera in enumerate(cameras):
                for topic_filter in camera.snapshot_topics:
                    if echo := next((t for t in ours if filter_matches(topic_filter, t)), None):
                        raise ValueError(f"cameras[{index}].snapshot_topics: {topic_filter!r} matches {echo}, "
                                         "which edge_vlm publishes itself: it would describe its own output")
        return cameras

    @model_validator(mode="after")
    def _field_rules_have_a_field(self) -> AppConfig:
        """A field rule names a field some profile asks for (or, with opencv, one of its details),
        and compares a number only with ``above``. The same field name means one type everywhere."""
        kinds = dict(OPENCV_DETAILS)
        if isinstance(self.backend, VlmBackendConfig):
            kinds = {}
            for profile_name, profile in self.profiles.items():
                for name, spec in profile.fields.items():
                    kind = "number" if spec.type in ("integer", "number") else spec.type
                    if kinds.setdefault(name, kind) != kind:
                        raise ValueError(f"profiles.{profile_name}.fields.{name}: {spec.type}, but another "
                                         f"profile's {name} is a {kinds[name]}: one entity cannot be both")
        for index, camera in enumerate(self.cameras):
            for number, rule in enumerate(camera.alerts):
                if rule.field is None:
                    continue
                where = f"cameras[{index}].alerts[{number}].field"
                if rule.field not in kinds:
                    raise ValueError(f"{where}: {rule.field!r} is no field of any profile "
                                     f"(known: {', '.join(sorted(kinds)) or 'none'})")
                if rule.above is not None and kinds[rule.field] != "number":
                    raise ValueError(f"{where}: {rule.field!r} is a {kinds[rule.field]}: `above` needs a number")
        return self

    @model_validator(mode="after")
    def _frigate_settings_complete(self) -> AppConfig:
        claimed: dict[str, list[tuple[int, FrigateCameraConfig]]] = {}  # Frigate's camera -> ours taking it
        for index, camera in enumerate(self.cameras):
            if camera.frigate is None:
                continue
            frigate_camera = camera.frigate.camera or camera.id
            for other, theirs in claimed.setdefault(frigate_camera, []):
                if camera.frigate.reviews and theirs.reviews:
                    raise ValueError(f"cameras[{index}].frigate: Frigate's camera {frigate_camera!r} is "
                                     f"cameras[{other}]'s too, and both describe its review items: one review item "
                                     "holds every object of the camera, so only one camera can describe them")
                if camera.frigate.overlaps(theirs):
                    raise ValueError(f"cameras[{index}].frigate: Frigate's camera {frigate_camera!r} is "
                                     f"cameras[{other}]'s too, and an event could pass both filters: give them labels "
                                     "that do not overlap (zones cannot: an object may enter both)")
            claimed[frigate_camera].append((index, camera.frigate))
            if not self.frigate.enabled:
                raise ValueError(f"cameras[{index}].frigate is set but frigate.enabled is false")
            if camera.frigate.snapshot == "http" and self.frigate.api_url is None:
                raise ValueError(f"cameras[{index}].frigate.snapshot: http needs frigate.api_url")
            if camera.frigate.reviews and self.frigate.api_url is None:
                raise ValueError(f"cameras[{index}].frigate.reviews: review items need frigate.api_url: one often "
                                 "holds two objects of a label, whose snapshots only Frigate's API tells apart")
            if self.mqtt.shared_group is not None and self.frigate.api_url is None:
                raise ValueError(f"cameras[{index}].frigate: with mqtt.shared_group each board hears only its share "
                                 "of Frigate's events, and cannot tell whose a snapshot is: set frigate.api_url")
            prefix = self.frigate.topic_prefix
            if any(takes_frigate_snapshots(f, prefix, frigate_camera) for f in camera.snapshot_topics):
                raise ValueError(f"cameras[{index}]: its snapshot_topics take Frigate's snapshots, which its "
                                 "frigate events describe already: remove one or the other")
        return self

    @model_validator(mode="after")
    def _request_topics_stay_out_of_ours(self) -> AppConfig:
        """A reply allowed on one of our topics would be taken for it (a status, a command); an image
        topic on them would read our states as images. Our snapshot and image topics are images."""
        cameras = [c.id for c in self.cameras]
        ours = [*our_output_topics(self.base_topic, self.node_id, self.discovery.prefix, cameras),
                *our_input_topics(self.base_topic, cameras)]
        for name, leaves in (("reply_topics", ()), ("image_topics", ("snapshot", "image"))):
            for topic_filter in getattr(self.mqtt, name) or []:
                if filters_overlap(topic_filter, f"{self.discovery.prefix}/#"):
                    raise ValueError(f"mqtt.{name}: {topic_filter!r} reaches into the discovery prefix "
                                     f"{self.discovery.prefix}/")
                if ours_too := covers_our_topic(topic_filter, ours, leaves):
                    raise ValueError(f"mqtt.{name}: {topic_filter!r} matches {ours_too}, a topic of edge_vlm's own")
        return self

    def camera(self, camera_id: str) -> CameraConfig | None:
        return next((c for c in self.cameras if c.id == camera_id), None)

    def profile_for(self, camera: CameraConfig | None, name: str | None = None) -> ProfileConfig:
        """The profile ``name`` (a trigger's, Home Assistant's pick), else the camera's own. 'default'
        is the camera's prompt if it has one, else the default profile."""
        chosen = name or (camera.profile if camera else None) or "default"
        if chosen == "default" and camera is not None and camera.prompt is not None:
            return ProfileConfig(prompt=camera.prompt)
        if chosen == "default":
            return self.profiles.get("default") or ProfileConfig(prompt=self.prompt)
        return self.profiles[chosen]

    @property
    def profile_names(self) -> list[str]:
        return list(dict.fromkeys(["default", *self.profiles]))

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"edge_vlm_{self.node_id}"
