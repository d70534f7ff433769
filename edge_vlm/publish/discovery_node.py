"""The daemon's own Home Assistant device: its status, its model, and the diagnostics it publishes.

Every entity but the status reads ``<base>/<node>/diagnostics`` (edge_vlm.core.stats) or
``<base>/<node>/model``; ``unique_id`` is ``edge_vlm_<node>_<entity>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge_vlm import __version__
from edge_vlm.config.models import AppConfig
from edge_vlm.config.vlm import VlmBackendConfig
from edge_vlm.core.stats import STAGES
from edge_vlm.core.topics import Topics
from edge_vlm.publish.discovery_device import MANUFACTURER, device_payload, entity_ids

# The daemon's "Last … time" sensors, one per stage of edge_vlm.core.stats.STAGES.
STAGE_NAMES = {"capture": "capture time", "preprocess": "preprocess time", "queued": "queue wait",
               "encoder": "encoder time", "prefill": "prefill time", "decode": "decode time",
               "publish": "publish time"}


def _counter(topics: Topics, key: str, name: str, icon: str) -> dict[str, Any]:
    node = topics.discovery_node
    return {
        "p": "sensor", "unique_id": f"{node}_{key}", **entity_ids("sensor", f"{node}_{key}"),
        "name": name, "entity_category": "diagnostic", "state_topic": topics.diagnostics,
        "value_template": f"{{{{ value_json.{key} }}}}", "state_class": "total_increasing",
        "icon": icon, "availability_topic": topics.status,
    }


def _measured(topics: Topics, key: str, name: str, value: str, unit: str, **more: Any) -> dict[str, Any]:
    """A value of the diagnostics JSON that is not always there (null: this board or backend
    has none): the entity is unavailable then, rather than showing a stale or made-up number."""
    node, diagnostics = topics.discovery_node, topics.diagnostics
    return {
        "p": "sensor", "unique_id": f"{node}_{key}", **entity_ids("sensor", f"{node}_{key}"),
        "name": name, "entity_category": "diagnostic", "state_topic": diagnostics,
        "value_template": f"{{{{ value_json.{value} }}}}", "unit_of_measurement": unit,
        "state_class": "measurement", **more,
        "availability": [
            {"topic": topics.status},
            {"topic": diagnostics, "value_template": f"{{{{ 'online' if value_json.{value} is number else "
                                                     "'offline' }}"},
        ],
        "availability_mode": "all",
    }


# The diagnostics value each board reading's entity shows.
BOARD_VALUES = {"npu_load": "npu_load", "soc_temperature": "soc_temperature_c", "memory": "memory_mib",
                "worker_memory": "worker_memory_mib"}
VLM_STAGES = ("encoder", "prefill", "decode")  # only the vlm backend has these


def measured(config: AppConfig, values: Mapping[str, Any] | None) -> frozenset[str]:
    """The board and backend entities that can have a value here: the vlm backend's stages only with
    it, a board reading only where the board gave one (``values``: the diagnostics; None: all)."""
    vlm = isinstance(config.backend, VlmBackendConfig)
    stages = {f"latency_{stage}" for stage in STAGES if vlm or stage not in VLM_STAGES}
    readings = {key for key, value in BOARD_VALUES.items() if values is None or values.get(value) is not None}
    return frozenset(stages | readings)


def _board_components(topics: Topics, shown: frozenset[str]) -> dict[str, Any]:
    """What the board and the backend measure, where they can: stage times, NPU load, heat, memory.
    One that cannot have a value here is sent as its platform alone (``{"p": "sensor"}``), which
    removes it from Home Assistant if an earlier version announced it (2025.4.4 and 2026.11.0 do,
    without a log line), and is nothing otherwise."""
    return {key: component if key in shown else {"p": component["p"]}
            for key, component in _all_board_components(topics).items()}


def _all_board_components(topics: Topics) -> dict[str, Any]:
    stages = {f"latency_{stage}": _measured(topics, f"latency_{stage}", f"Last {STAGE_NAMES[stage]}",
                                            f"stages_ms.{stage}", "ms", device_class="duration")
              for stage in STAGES}
    return {
        **stages,
        "npu_load": _measured(topics, "npu_load", "NPU load", "npu_load", "%", icon="mdi:gauge",
                              json_attributes_topic=topics.diagnostics,
                              json_attributes_template="{{ (value_json.npu_load_cores or {}) | tojson }}"),
        "soc_temperature": _measured(topics, "soc_temperature", "SoC temperature", "soc_temperature_c", "°C",
                                     device_class="temperature"),
        "memory": _measured(topics, "memory", "Memory", "memory_mib", "MiB", device_class="data_size"),
        "worker_memory": _measured(topics, "worker_memory", "Inference worker memory", "worker_memory_mib", "MiB",
                                   device_class="data_size"),
    }


def node_device_payload(config: AppConfig, topics: Topics, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``values``: the diagnostics, which say what this board reports (None: announce every reading)."""
    node = topics.discovery_node
    available = {"availability_topic": topics.status}
    diagnostics = topics.diagnostics
    device = {
        "ids": [node],
        "name": f"edge_vlm {config.node_id}",
        "mf": MANUFACTURER,
        "mdl": "Camera describer",
        "sw": __version__,
    }
    return device_payload(device, {
        "status": {
            "p": "binary_sensor", "unique_id": f"{node}_status",
            **entity_ids("binary_sensor", f"{node}_status"), "name": "Status",
            "device_class": "connectivity", "entity_category": "diagnostic",
            "state_topic": topics.status, "payload_on": "online", "payload_off": "offline",
        },
        "model": {
            "p": "binary_sensor", "unique_id": f"{node}_model",
            **entity_ids("binary_sensor", f"{node}_model"),
            "name": "Model", "device_class": "running", "entity_category": "diagnostic",
            "state_topic": topics.model, "value_template": "{{ value_json.state }}",
            "payload_on": "ready", "payload_off": "unavailable", "json_attributes_topic": topics.model,
            **available,
        },
        "backend": {
            "p": "sensor", "unique_id": f"{node}_backend",
            **entity_ids("sensor", f"{node}_backend"),
            "name": "Backend", "entity_category": "diagnostic", "state_topic": diagnostics,
            "value_template": "{{ value_json.backend }}", "icon": "mdi:chip", **available,
        },
        "queue_depth": {
            # Jobs waiting for the backend, not counting the one it runs.
            "p": "sensor", "unique_id": f"{node}_queue_depth",
            **entity_ids("sensor", f"{node}_queue_depth"), "name": "Jobs waiting",
            "entity_category": "diagnostic", "state_topic": diagnostics,
            "value_template": "{{ value_json.queue_depth }}", "state_class": "measurement",
            "icon": "mdi:tray-full", **available,
        },
        "jobs_done": _counter(topics, "jobs_done", "Jobs done", "mdi:check-circle-outline"),
        "jobs_failed": _counter(topics, "jobs_failed", "Jobs failed", "mdi:alert-circle-outline"),
        "jobs_coalesced": _counter(topics, "jobs_coalesced", "Jobs coalesced", "mdi:call-merge"),
        "jobs_skipped": _counter(topics, "jobs_skipped", "Jobs skipped", "mdi:debug-step-over"),
        "inputs_refused": _counter(topics, "inputs_refused", "Inputs refused", "mdi:cancel"),
        "latency": {
            "p": "sensor", "unique_id": f"{node}_latency",
            **entity_ids("sensor", f"{node}_latency"),
            "name": "Last latency", "entity_category": "diagnostic", "state_topic": diagnostics,
            "value_template": "{{ value_json.last_latency_ms }}", "unit_of_measurement": "ms",
            "device_class": "duration", "state_class": "measurement", **available,
        },
        **_board_components(topics, measured(config, values)),
    })
