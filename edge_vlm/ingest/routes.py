"""The daemon's routing table: every inbound topic, who handles it, and how the inbox treats it.

Tried in this order: our own sync message, Home Assistant's status and our device configs, the
settings' commands and retained states, Frigate's events and snapshots, requests, triggers, the
cameras' own snapshot topics, then their other ``snapshot_topics``. Triggers and requests are
``asked`` (the inbox keeps them longest); snapshots are ``latest_wins`` (it may coalesce them).
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_vlm.config.models import AppConfig
from edge_vlm.core.topics import SNAPSHOT, TRIGGER, Topics
from edge_vlm.ingest.controls import Controls
from edge_vlm.ingest.router import Handler, Router


@dataclass(frozen=True)
class Handlers:
    """Who handles what, from every stage (handed in by the service)."""

    retained_image: Handler  # sees every message: a request may wait for a topic's retained image
    sync: Handler
    ha_status: Handler
    stale_device: Handler
    controls: Controls
    frigate_event: Handler
    frigate_review: Handler
    frigate_snapshot: Handler
    request: Handler
    trigger: Handler
    own_snapshot: Handler
    snapshot: Handler  # a topic of some cameras' snapshot_topics


def add_routes(router: Router, config: AppConfig, topics: Topics, handlers: Handlers) -> None:
    """Fill ``router`` (made first: the inbox and the dispatcher hold it already)."""
    add = router.add
    router.tap(handlers.retained_image)
    add(topics.sync, handlers.sync)
    if config.discovery.enabled:
        add(config.discovery.ha_status_topic, handlers.ha_status)
        add(topics.any_camera_device_config, handlers.stale_device, replay_only=True)
    for topic in handlers.controls.subscriptions():
        add(topic, handlers.controls.handle)
    for topic in handlers.controls.replay_only():
        add(topic, handlers.controls.handle, replay_only=True)
    if any(c.frigate is not None for c in config.cameras):
        prefix = config.frigate.topic_prefix
        add(f"{prefix}/events", handlers.frigate_event, shared=True)
        if any(c.frigate is not None and c.frigate.reviews for c in config.cameras):
            add(f"{prefix}/reviews", handlers.frigate_review, shared=True)
        # Such a topic may also be one of a camera's snapshot_topics: both hear of it.
        add(f"{prefix}/+/+/snapshot", handlers.frigate_snapshot, handlers.snapshot, latest_wins=True)
    add(topics.request, handlers.request, shared=True, asked=True)
    add(topics.any_camera(TRIGGER), handlers.trigger, asked=True)
    add(topics.any_camera(SNAPSHOT), handlers.own_snapshot, latest_wins=True)
    for topic_filter in dict.fromkeys(f for camera in config.cameras for f in camera.snapshot_topics):
        add(topic_filter, handlers.snapshot, latest_wins=True)
