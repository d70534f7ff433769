"""What every Home Assistant discovery payload shares: the device-based frame and entity ids (the
same on every Home Assistant version: ``object_id`` and ``default_entity_id``, see _with_object_id).

A device-based payload (Home Assistant 2024.11 and later) is the device, the origin (required for
this kind of discovery), the QoS of every topic it names, and its components keyed by id.
"""

from __future__ import annotations

import re
from typing import Any

from edge_vlm import __version__

ORIGIN = {"name": "edge_vlm", "sw": __version__}
MANUFACTURER = "edge_vlm"


def entity_id(platform: str, name: str) -> str:
    """A ``default_entity_id`` Home Assistant accepts: ids may hold ``-``, entity ids only ``[a-z0-9_]``
    (no ``__``, no ``_`` at either end)."""
    return f"{platform}.{re.sub(r'[^a-z0-9]+', '_', name.lower()).strip('_')}"


def entity_ids(platform: str, name: str) -> dict[str, str]:
    """The entity id for every Home Assistant version: before 2025.10 it reads ``object_id``, from
    2025.10 ``default_entity_id``, and each drops the other without a word (tried on 2025.4.4 and
    2026.11.0: the same ids on both, no warning, no repair issue). Both, then, naming the same id."""
    default = entity_id(platform, name)
    return {"default_entity_id": default, "object_id": default.split(".", 1)[1]}


def device_payload(device: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    return {"dev": device, "o": ORIGIN, "qos": 1, "cmps": components}
