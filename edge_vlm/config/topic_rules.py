"""MQTT topic rules the configuration checks: valid filters, and none that would feed the daemon
its own output."""

from __future__ import annotations

CONTROLS = ("enabled", "cooldown", "profile", "prompt", "motion")  # retained states (edge_vlm.controls)


def topic_filter_problem(topic: str) -> str | None:
    """Why ``topic`` is not a valid MQTT subscription filter, or None if it is."""
    if not topic or len(topic.encode()) > 65535:
        return "a topic filter must be 1 to 65535 bytes"
    if "\0" in topic:
        return "a topic filter cannot contain NUL"
    levels = topic.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return "# must be a whole level and the last one"
        if "+" in level and level != "+":
            return "+ must be a whole level"
    return None


def filter_matches(topic_filter: str, topic: str) -> bool:
    """Whether an MQTT subscription filter matches a topic (wildcards + and #)."""
    levels = topic.split("/")
    for index, level in enumerate(topic_filter.split("/")):
        if level == "#":
            return True
        if index >= len(levels) or level not in ("+", levels[index]):
            return False
    return len(topic_filter.split("/")) == len(levels)


def our_output_topics(base: str, node: str, discovery_prefix: str, cameras: list[str]) -> list[str]:
    """One example of every topic the daemon publishes on (any camera id, known or not)."""
    topics = [f"{base}/{node}/{leaf}" for leaf in ("status", "diagnostics", "model", "sync")]
    for camera in [*cameras, "any-camera"]:
        topics += [f"{base}/{camera}/{leaf}"
                   for leaf in ("description", "attributes", "result", "image", "error", "stream", "event", "alerts",
                                "fields", "alert/any-rule", "configured", *CONTROLS)]
        topics.append(f"{discovery_prefix}/device/edge_vlm_{node}/{camera}/config")
    topics.append(f"{discovery_prefix}/device/edge_vlm_{node}/config")
    topics.append(f"{base}/response")
    return topics


def takes_frigate_snapshots(topic_filter: str, prefix: str, camera: str) -> bool:
    """Whether a filter matches some ``<prefix>/<camera>/<label>/snapshot``."""
    levels = topic_filter.split("/")
    label_at = len(prefix.split("/")) + 1
    label = levels[label_at] if len(levels) > label_at and levels[label_at] not in ("+", "#") else "any"
    return filter_matches(topic_filter, f"{prefix}/{camera}/{label}/snapshot")
