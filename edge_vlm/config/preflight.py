"""Start-up checks that look outside the file: referenced files exist, secrets are set (variables)
or there (systemd credentials).

Kept out of the pydantic validators so that validation stays pure and testable, and so that
``edge-vlm check`` on a laptop can validate a board's config and still say what is missing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from edge_vlm.config.files import file_problem
from edge_vlm.config.http_api import key_problem
from edge_vlm.config.loader import ConfigFile, line_number, load_config
from edge_vlm.config.models import AppConfig
from edge_vlm.config.mqtt import MqttConfig
from edge_vlm.config.secrets import read_secret, secret_problem
from edge_vlm.config.sources import FrigateConfig, HttpSourceConfig, RtspSourceConfig
from edge_vlm.config.vlm import VlmBackendConfig
from edge_vlm.core.errors import ConfigError


def preflight(loaded: ConfigFile, environ: Mapping[str, str], root: Path = Path("/")) -> list[str]:
    """Every problem that would stop the daemon from starting, formatted like config errors (the
    files looked for under ``root``: the board's / unless a test builds one)."""
    config = loaded.config
    problems = []

    def there(path: Path) -> Path:
        return root / path.relative_to("/") if path.is_absolute() else path

    tls = config.mqtt.tls
    if tls.enabled:
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(tls, name)
            if path is not None and (problem := file_problem(there(path))):
                problems.append(f"{loaded.where('mqtt', 'tls', name)}: {str(path)!r}: {problem}")
    backend = config.backend
    if isinstance(backend, VlmBackendConfig):
        for key, path in backend.files.items():
            if problem := file_problem(there(path)):
                where_from = ("built from rknn-llm: models/README.md, Building imgenc" if key[-1] == "executable"
                              else "models/README.md says where to get it")
                problems.append(f"{loaded.where('backend', *key)}: {str(path)!r}: {problem} ({where_from})")
            elif key[-1] == "executable" and not os.access(there(path), os.X_OK):
                problems.append(f"{loaded.where('backend', *key)}: {str(path)!r}: not executable")
    problems += _secret_problems(loaded, environ)
    return sorted(problems, key=line_number)  # in the order of the file


def _secret_problems(loaded: ConfigFile, environ: Mapping[str, str]) -> list[str]:
    """A password variable that is unset, a credential that is not there."""
    owners: list[tuple[tuple[str | int, ...], MqttConfig | RtspSourceConfig | HttpSourceConfig | FrigateConfig]] = [
        (("mqtt",), loaded.config.mqtt), (("frigate",), loaded.config.frigate),
    ]
    for index, camera in enumerate(loaded.config.cameras):
        if isinstance(camera.source, RtspSourceConfig | HttpSourceConfig):
            owners.append((("cameras", index, "source"), camera.source))
    problems = []
    for path, owner in owners:
        problem = secret_problem(owner.password_env, owner.password_credential, environ)
        if problem is not None:
            key = "password_env" if owner.password_credential is None else "password_credential"
            problems.append(f"{loaded.where(*path, key)}: {problem}")
    http = loaded.config.http
    if http.enabled and not http.allow_no_key:
        key = "api_key_env" if http.api_key_credential is None else "api_key_credential"
        problem = secret_problem(http.api_key_env, http.api_key_credential, environ) or key_problem(
            read_secret(http.api_key_env, http.api_key_credential, environ))
        if problem is not None:
            problems.append(f"{loaded.where('http', key)}: {problem}")
    return problems


def mqtt_password(config: AppConfig, environ: Mapping[str, str]) -> str | None:
    """The broker password from its variable or credential; SecretUnavailable if a credential cannot be read."""
    return read_secret(config.mqtt.password_env, config.mqtt.password_credential, environ)


def load_checked(path: Path, environ: Mapping[str, str]) -> ConfigFile:
    """The file validated and checked against this machine, as ``edge-vlm run`` (and a reload) needs
    it; ConfigError with every problem otherwise."""
    loaded = load_config(path)
    problems = preflight(loaded, environ)
    if problems:
        raise ConfigError(problems)
    return loaded
