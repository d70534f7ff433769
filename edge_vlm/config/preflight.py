"""Start-up checks that look outside the file: referenced files exist, secrets are set.

Kept out of the pydantic validators so that validation stays pure and testable, and so that
``edge-vlm check`` on a laptop can validate a board's config and still say what is missing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from edge_vlm.config.loader import ConfigFile
from edge_vlm.config.models import AppConfig
from edge_vlm.config.vlm import VlmBackendConfig


def _file_problem(path: Path) -> str | None:
    if not path.exists():
        return "file not found"
    if not path.is_file():
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "not readable by this user"
    return None


def preflight(loaded: ConfigFile, environ: Mapping[str, str]) -> list[str]:
    """Every problem that would stop the daemon from starting, formatted like config errors."""
    config = loaded.config
    problems = []
    tls = config.mqtt.tls
    if tls.enabled:
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(tls, name)
            if path is not None and (problem := _file_problem(path)):
                problems.append(f"{loaded.where('mqtt', 'tls', name)}: {str(path)!r}: {problem}")
    backend = config.backend
    if isinstance(backend, VlmBackendConfig):
        for key, path in backend.files.items():
            if problem := _file_problem(path):
                problems.append(f"{loaded.where('backend', *key)}: {str(path)!r}: {problem}")
            elif key[-1] == "executable" and not os.access(path, os.X_OK):
                problems.append(f"{loaded.where('backend', *key)}: {str(path)!r}: not executable")
    env = config.mqtt.password_env
    if env is not None and env not in environ:
        problems.append(
            f"{loaded.where('mqtt', 'password_env')}: {env!r}: the environment variable is not set",
        )
    return problems


def mqtt_password(config: AppConfig, environ: Mapping[str, str]) -> str | None:
    env = config.mqtt.password_env
    return None if env is None else environ.get(env)
