"""MQTT topic rules the configuration checks: valid filters, and none that would feed the daemon
its own output."""

from __future__ import annotations

CONTROLS = ("enabled", "cooldown", "profile", "prompt", "motion")  # retained states (edge_vlm.ingest.controls)


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


HOME_ASSISTANT = "homeassistant/#"  # Home Assistant's own topics (its status, discovery), whatever our prefix
_CAMERA_LEAVES = ("description", "attributes", "result", "image", "error", "stream", "event", "alerts", "fields",
                  "configured", "snapshot", "trigger", *CONTROLS)


def our_topic_filters(base: str, node: str, discovery_prefix: str) -> list[str]:
    """Filters that cover every topic the daemon publishes or listens on under its base topic and
    discovery prefix, for any camera id (configured or not). ``<base>/response`` is not among them:
    that is where answers go."""
    filters = [f"{base}/{node}/#", f"{base}/request", f"{base}/+/alert/+", f"{discovery_prefix}/#", HOME_ASSISTANT]
    filters += [f"{base}/+/{leaf}" for leaf in _CAMERA_LEAVES]
    filters += [f"{base}/+/{control}/set" for control in CONTROLS]
    return filters


def filters_overlap(first: str, second: str) -> bool:
    """Whether some topic matches both filters (valid ones)."""
    a, b = first.split("/"), second.split("/")
    for x, y in zip(a, b, strict=False):
        if "#" in (x, y):
            return True
        if x != y and "+" not in (x, y):
            return False
    longer = a if len(a) > len(b) else b
    return len(a) == len(b) or longer[min(len(a), len(b))] == "#"  # "x/#" matches "x" too


def request_filter_problem(topic_filter: str) -> str | None:
    """Why ``topic_filter`` cannot allow a request's reply or image topic, on its own: not a valid
    filter, a ``$`` topic (the broker's $SYS, $share), or one that reaches into Home Assistant's."""
    if problem := topic_filter_problem(topic_filter):
        return problem
    if topic_filter.startswith("$"):
        return "$ topics are the broker's ($SYS) or shared subscriptions, never a request's"
    if filters_overlap(topic_filter, HOME_ASSISTANT):
        return "it reaches into homeassistant/…, Home Assistant's topics"
    return None


def our_input_topics(base: str, cameras: list[str]) -> list[str]:
    """One example of every topic the daemon listens on under its base topic (any camera id)."""
    topics = [f"{base}/request"]
    for camera in [*cameras, "any-camera"]:
        topics += [f"{base}/{camera}/snapshot", f"{base}/{camera}/trigger"]
        topics += [f"{base}/{camera}/{control}/set" for control in CONTROLS]
    return topics


def covers_our_topic(topic_filter: str, ours: list[str], leaves: tuple[str, ...] = ()) -> str | None:
    """The first of ``ours`` (example topics: ``our_output_topics``, ``our_input_topics``) that
    ``topic_filter`` matches, but for the default response topic ``<base>/response`` and topics
    ending in one of ``leaves``."""
    return next((t for t in ours if not t.endswith(("/response", *(f"/{leaf}" for leaf in leaves)))
                 and filter_matches(topic_filter, t)), None)
