"""One camera's settings: where its frames come from, what starts a description, what it alerts on."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from edge_vlm.config.automation import AlertRule, PromptText
from edge_vlm.config.base import ID_PATTERN, StrictModel
from edge_vlm.config.sources import (
    ClipConfig,
    FrigateCameraConfig,
    MotionConfig,
    MqttSourceConfig,
    RtspSourceConfig,
    SourceConfig,
)
from edge_vlm.config.topic_rules import topic_filter_problem


class CameraConfig(StrictModel):
    id: str = Field(
        pattern=ID_PATTERN,
        description="Camera id: lower-case letters, digits, _ and -. Used in topics and entity ids; "
        "changing it makes new entities in Home Assistant.",
    )
    name: str | None = Field(
        None, min_length=1, max_length=64, description="Friendly name; default from the id.",
    )
    enabled: bool = Field(True, description="A disabled camera keeps its entities but describes nothing.")
    prompt: PromptText | None = Field(
        None, min_length=1, max_length=4000, description="Prompt for this camera, instead of a profile; default: the "
        "camera's profile, else the 'default' one.",
    )
    source: SourceConfig = Field(
        default_factory=MqttSourceConfig, description="Where a trigger takes its frame from: mqtt (the last "
        "snapshot received, the default), rtsp or http.",
    )
    snapshot_topics: list[str] = Field(
        default_factory=list, max_length=16,
        description="Extra topics carrying raw JPEG/PNG snapshots for this camera, e.g. "
        "frigate/front_door/person/snapshot (wildcards + and # allowed).",
    )
    describe_snapshots: bool = Field(
        True, description="Describe each snapshot received. false: keep them only, as the camera's latest "
        "frame and for its clip (a camera that publishes a frame every second or so); triggers, requests, "
        "intervals and Frigate events describe.",
    )
    accept_retained: bool = Field(
        False, description="Describe retained snapshots delivered on subscribe. Off by default: "
        "Frigate's snapshots are retained and would be stale at start-up.",
    )
    motion: MotionConfig = Field(default_factory=MotionConfig, description="The built-in motion trigger.")
    interval_s: float | None = Field(
        None, ge=1, le=86_400, description="Describe the camera's source every this many seconds; unset: never.",
    )
    skip_unchanged: bool = Field(
        False, description="Skip a motion, interval or snapshot description whose frame looks like the last "
        "one described (perceptual hash); the result says it was skipped.",
    )
    unchanged_distance: int = Field(
        4, ge=0, le=32, description="How many of the 64 hash bits may differ for a frame to count as unchanged.",
    )
    frigate: FrigateCameraConfig | None = Field(
        None, description="Describe this camera's Frigate events (needs frigate.enabled).",
    )
    profile: str | None = Field(
        None, pattern=ID_PATTERN, description="The prompt profile it uses; unset: its prompt, else 'default'. "
        "Home Assistant can pick another at run time.",
    )
    cooldown_s: float = Field(
        0.0, ge=0, le=86_400, description="At least this long between two descriptions that came by themselves "
        "(snapshots, motion, intervals, Frigate events); requests and triggers are never held back. Home Assistant "
        "can change it.",
    )
    alerts: list[AlertRule] = Field(default_factory=list, max_length=16, description="What to alert on.")
    clip: ClipConfig | None = Field(
        None, description="Keep the camera's last seconds, so that a trigger can ask for a clip: what happened, "
        "as a grid of key frames (the frames of a persistent rtsp stream, an http source polled at clip.fps, or "
        "the mqtt snapshots received). Unset: no buffer, no clips.",
    )

    @model_validator(mode="after")
    def _prompt_or_profile(self) -> CameraConfig:
        if self.prompt is not None and self.profile is not None:
            raise ValueError("give prompt or profile, not both")
        return self

    @field_validator("alerts")
    @classmethod
    def _alert_names_unique(cls, alerts: list[AlertRule]) -> list[AlertRule]:
        names = [a.name for a in alerts]
        if len(names) != len(set(names)):
            raise ValueError(f"alert names must be unique: {names}")
        return alerts

    @model_validator(mode="after")
    def _sources_can_do_what_is_asked(self) -> CameraConfig:
        if self.motion.enabled and not self.watches_stream:
            raise ValueError("motion.enabled needs a persistent rtsp source (it watches the stream)")
        if self.frigate is not None and self.frigate.clip and self.clip is None:
            raise ValueError("frigate.clip describes events with the camera's last seconds: set clip too")
        if self.clip is not None and not self.keeps_frames:
            raise ValueError("clip needs frames coming all the time: an rtsp source in mode persistent (on_demand "
                             "connects only when asked), an http source (polled at clip.fps) or mqtt snapshots")
        return self

    @field_validator("snapshot_topics")
    @classmethod
    def _topic_filters_valid(cls, topics: list[str]) -> list[str]:
        for topic in topics:
            problem = topic_filter_problem(topic)
            if problem:
                raise ValueError(f"{topic!r}: {problem}")
        return topics

    @property
    def watches_stream(self) -> bool:
        """A persistent RTSP camera: it has a stream state and can detect motion."""
        return isinstance(self.source, RtspSourceConfig) and self.source.mode == "persistent"

    @property
    def keeps_frames(self) -> bool:
        """Whether its source can keep its last seconds for clips: all but an on-demand RTSP stream."""
        return not isinstance(self.source, RtspSourceConfig) or self.watches_stream

    @property
    def display_name(self) -> str:
        return self.name or self.id.replace("_", " ").replace("-", " ").capitalize()
