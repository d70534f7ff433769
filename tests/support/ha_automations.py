"""What a user pastes into Home Assistant: the automations and script of docs/home-assistant.md, and the
blueprint.

Each goes in the way Home Assistant's own editors put it: an automation or a script through the
config API the automation and script editors call (``/api/config/automation/config/<id>``, which
writes ``automations.yaml`` and reloads), the blueprint through ``blueprint/save``, what the UI's
"Import blueprint" calls once it has the file.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.support.ha import HomeAssistant, wait_until

ROOT = Path(__file__).resolve().parents[2]
AUTOMATIONS_DOC = ROOT / "docs" / "home-assistant.md"
BLUEPRINT = ROOT / "config" / "blueprints" / "edge_vlm_notify.yaml"
BLUEPRINT_PATH = "edge_vlm/edge_vlm_notify.yaml"  # where the docs say to put it, under blueprints/automation


def documented_yaml(title: str) -> dict[str, Any]:
    """The YAML block of docs/home-assistant.md whose ``alias`` (or whose one script's alias) is ``title``."""
    for block in re.findall(r"^```yaml\n(.*?)^```", AUTOMATIONS_DOC.read_text(), flags=re.S | re.M):
        parsed = yaml.safe_load(block)
        if not isinstance(parsed, dict):
            continue
        aliases = [parsed.get("alias"), *(v.get("alias") for v in parsed.values() if isinstance(v, dict))]
        if title in aliases:
            return parsed
    raise AssertionError(f"{AUTOMATIONS_DOC.name} has no YAML block with alias {title!r}")


@contextmanager
def automation(hass: HomeAssistant, config: dict[str, Any]) -> Iterator[str]:
    """``config`` saved as a new automation; its entity id. Deleted again when the block ends."""
    key = uuid.uuid4().hex
    hass.api("POST", f"config/automation/config/{key}", config)
    try:
        found = wait_until(lambda: next((s["entity_id"] for s in hass.states() if s["entity_id"].startswith(
            "automation.") and s["attributes"].get("id") == key), None), what=f"automation {config.get('alias')!r}")
        state = hass.state(found)
        assert state is not None and state["state"] == "on", f"the automation did not load: {state}"
        yield str(found)
    finally:
        hass.api("DELETE", f"config/automation/config/{key}")


@contextmanager
def script(hass: HomeAssistant, config: dict[str, Any]) -> Iterator[str]:
    """A scripts.yaml block (``{key: {alias: …, sequence: …}}``) saved as a script; its entity id."""
    (key, body), = config.items()
    hass.api("POST", f"config/script/config/{key}", body)
    try:
        wait_until(lambda: hass.state(f"script.{key}") is not None, what=f"script.{key}")
        yield f"script.{key}"
    finally:
        hass.api("DELETE", f"config/script/config/{key}")


def save_blueprint(hass: HomeAssistant) -> str:
    """The project's blueprint saved where an import puts it; its path for ``use_blueprint``."""
    with hass.websocket() as ws:
        ws.command("blueprint/save", domain="automation", path=BLUEPRINT_PATH, yaml=BLUEPRINT.read_text(),
                   allow_override=True)
    return BLUEPRINT_PATH
