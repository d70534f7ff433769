"""A real Home Assistant Core for the tests, started by the harness scripts beside this file.

``tests/support/ha_harness.sh`` runs a release that this machine's Python can run (2025.4.4 on
Python 3.13.0) in a venv; ``tests/support/ha_harness_chroot.sh`` runs newer ones in a Debian chroot
(trixie's Python 3.13.5 up to 2026.2, forky's 3.14 from 2026.3). Either starts a private mosquitto
beside it, onboards it, adds the MQTT integration and writes ``HA_URL``, ``HA_TOKEN``, ``MQTT_PORT``
to an env file. The venvs and chroots are cached in ``.cache/ha`` (``EDGE_VLM_HA_CACHE``) between
runs; each start has its own config, ports and logs in a directory of the test session.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.ha_websocket import HaWebSocket

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("EDGE_VLM_HA_CACHE") or HERE.parents[1] / ".cache" / "ha")
# The oldest release this machine's Python runs, and the newest (pinned, so that a cached run asks
# no package index; EDGE_VLM_HA_VERSIONS="2025.4.4,2026.2.3" picks others).
DEFAULT_VERSIONS = ("2025.4.4", "2026.11.0")
# A start that installs (about 2 minutes for a venv, 3 to 4 for a chroot) or only starts (10-20 s).
INSTALL_TIMEOUT_S = 900.0
START_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 60.0
HTTP_TIMEOUT_S = 30.0
WAIT_S = 30.0  # how long a test waits for Home Assistant to show something

# What tests/ha uses besides MQTT, appended to configuration.yaml: the companion app's integration
# (tests.support.ha_phone), notify actions, and the automations and scripts the UI's editors write.
EXTRA_CONFIG = """
mobile_app:
notify:
automation: !include automations.yaml
script: !include scripts.yaml
# binary_sensor.front_door_doorbell of docs/home-assistant.md, rung by turning the input_boolean on
input_boolean:
  doorbell_button:
template:
  - binary_sensor:
      - name: Front door doorbell
        unique_id: front_door_doorbell
        state: "{{ is_state('input_boolean.doorbell_button', 'on') }}"
"""

# What the session measured, said at its end (tests/ha/conftest.py).
REPORT: list[str] = []


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


@dataclass(frozen=True)
class Release:
    """A Home Assistant Core release, and how this machine runs it."""

    version: str

    @property
    def suite(self) -> str | None:
        """The Debian suite whose Python runs it, or None: the host's Python does."""
        if _numbers(self.version) < (2025, 5):
            return None
        return "trixie" if _numbers(self.version) < (2026, 3) else "forky"

    @property
    def script(self) -> Path:
        return HERE / ("ha_harness.sh" if self.suite is None else "ha_harness_chroot.sh")

    @property
    def venv(self) -> Path:
        if self.suite is None:
            return CACHE / f"venv-{self.version}"
        return CACHE / f"root-{self.suite}" / "opt" / "ha" / f"venv-{self.version}"

    @property
    def installed(self) -> bool:
        return (self.venv / ".ha_venv_ok").is_file()

    def unavailable(self) -> str | None:
        """Why this machine cannot run it, or None."""
        if self.suite is not None and os.geteuid() != 0:
            return f"Home Assistant {self.version} runs in a chroot, which needs root"
        return None

    def at_least(self, version: str) -> bool:
        return _numbers(self.version) >= _numbers(version)


def releases() -> list[Release]:
    wanted = os.environ.get("EDGE_VLM_HA_VERSIONS", "")
    return [Release(v.strip()) for v in (wanted.split(",") if wanted.strip() else DEFAULT_VERSIONS) if v.strip()]


@dataclass
class HomeAssistant:
    """A running Home Assistant: its REST API with a long-lived token, and its broker's port."""

    release: Release
    url: str
    token: str
    mqtt_port: int
    work: Path
    log: Path
    start_s: float = 0.0
    installed_before: bool = True
    _environment: dict[str, str] = field(default_factory=dict, repr=False)

    def api(self, method: str, path: str, body: Any = None, timeout: float = HTTP_TIMEOUT_S) -> Any:
        """``method`` on ``/api/<path>`` with the token; the decoded JSON (or text) answer."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}/api/{path.lstrip('/')}", data=data, method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode()
        try:
            return json.loads(text)
        except ValueError:
            return text

    def state(self, entity_id: str) -> dict[str, Any] | None:
        """``GET /api/states/<entity_id>``; None when Home Assistant has no such entity."""
        try:
            state: dict[str, Any] = self.api("GET", f"states/{entity_id}")
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise
        return state

    def states(self) -> list[dict[str, Any]]:
        states: list[dict[str, Any]] = self.api("GET", "states")
        return states

    def call(self, domain: str, service: str, **data: Any) -> Any:
        """``POST /api/services/<domain>/<service>``: what a user's tap or automation does."""
        return self.api("POST", f"services/{domain}/{service}", data)

    def template(self, template: str) -> str:
        return str(self.api("POST", "template", {"template": template}))

    def websocket(self) -> HaWebSocket:
        return HaWebSocket(self.url, self.token)

    @property
    def broker_log(self) -> Path:
        """Its mosquitto's log, which has a line for each subscription."""
        return self.work / "mosquitto" / "mosquitto.log"

    @property
    def config_dir(self) -> Path:
        """Its configuration directory (media/ in it is media_source's "local")."""
        return Path(_env_file(self.work / "env")["HA_CONFIG_DIR"])

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        _harness(self.release, "stop", self.work, self._environment, STOP_TIMEOUT_S)


def start(release: Release, work: Path) -> HomeAssistant:
    """Install ``release`` if the cache lacks it, start it and its broker; ``work`` keeps this run's state."""
    work.mkdir(parents=True, exist_ok=True)
    extra = work / "extra-configuration.yaml"
    extra.write_text(EXTRA_CONFIG)
    environment = {
        "HA_WORK": str(work), "HA_CACHE": str(CACHE), "HA_VERSION": release.version, "HA_SKIP_DEMO": "1",
        "HA_EXTRA_CONFIG": str(extra),
        # the config dir inside a chroot that other runs may share
        "HA_RUN_ID": f"{work.name}-{os.getpid()}",
    }
    if release.suite is not None:
        environment["HA_SUITE"] = release.suite
    installed = release.installed
    began = time.monotonic()
    try:
        _harness(release, "start", work, environment, START_TIMEOUT_S if installed else INSTALL_TIMEOUT_S)
    except BaseException:
        _harness(release, "stop", work, environment, STOP_TIMEOUT_S, check=False)
        raise
    took = time.monotonic() - began
    values = _env_file(work / "env")
    return HomeAssistant(release, values["HA_URL"], values["HA_TOKEN"], int(values["MQTT_PORT"]), work,
                         Path(values.get("HA_LOG", work / "hass.log")), took, installed, environment)


def _harness(release: Release, command: str, work: Path, environment: dict[str, str], timeout: float, *,
             check: bool = True) -> None:
    output = work / f"harness-{command}.log"
    with output.open("ab") as sink:
        done = subprocess.run(["bash", str(release.script), command], env={**os.environ, **environment},
                              stdout=sink, stderr=subprocess.STDOUT, timeout=timeout, check=False)
    if check and done.returncode != 0:
        tail = "\n".join(output.read_text(errors="replace").splitlines()[-25:])
        raise RuntimeError(f"{release.script.name} {command} (Home Assistant {release.version}) exited with "
                           f"{done.returncode}; the end of {output}:\n{tail}")


def _env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line.removeprefix("export ").partition("=")
            values[name] = " ".join(shlex.split(value))
    return values


def wait_until(condition: Callable[[], Any], timeout: float = WAIT_S, what: str = "the condition") -> Any:
    """Poll ``condition`` (a call to Home Assistant's API) until it returns something true; that value.

    The polls are the waiting: Home Assistant has no push for most of what a user sees, and the
    deadline bounds it."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {timeout} s")
        time.sleep(0.05)


def setup(release: Release, work: Path) -> float:
    """Install ``release`` into the cache (nothing to do when it is there); the seconds it took."""
    work.mkdir(parents=True, exist_ok=True)
    environment = {"HA_WORK": str(work), "HA_CACHE": str(CACHE), "HA_VERSION": release.version}
    if release.suite is not None:
        environment["HA_SUITE"] = release.suite
    began = time.monotonic()
    _harness(release, "setup", work, environment, INSTALL_TIMEOUT_S)
    return time.monotonic() - began


if __name__ == "__main__":
    # scripts/test-ha --setup: install every release the tests use, before (and apart from) the tests
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ha-setup-") as scratch:
        for wanted in releases():
            if (why := wanted.unavailable()) is not None:
                sys.stderr.write(f"Home Assistant {wanted.version}: not installed: {why}\n")
                continue
            cached = wanted.installed
            took = setup(wanted, Path(scratch) / wanted.version)
            sys.stderr.write(f"Home Assistant {wanted.version}: {'cached' if cached else 'installed'} in {took:.1f} s "
                             f"({wanted.venv})\n")
