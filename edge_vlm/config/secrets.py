"""Secrets the configuration names but never holds: an environment variable (``password_env``) or a
systemd credential (``password_credential``), a file that ``LoadCredential=NAME:/path`` in the unit
puts in ``$CREDENTIALS_DIRECTORY``, readable by the service only.

Messages here name where a secret comes from, never what it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationInfo, field_validator

from edge_vlm.config.base import StrictModel
from edge_vlm.core.errors import SecretUnavailable

CREDENTIALS_DIRECTORY = "CREDENTIALS_DIRECTORY"


class PasswordSourced(StrictModel):
    """A model with a ``password_env`` and a ``password_credential`` (declared by each with its own
    description): they exclude each other."""

    @field_validator("password_credential", check_fields=False)
    @classmethod
    def _one_password_source(cls, credential: str | None, info: ValidationInfo) -> str | None:
        if credential is not None and info.data.get("password_env") is not None:
            raise ValueError("set password_env or password_credential, not both")
        return credential


def describe_source(env: str | None, credential: str | None) -> str:
    """Where a secret comes from, for messages: ``$NAME`` or ``credential NAME``."""
    if credential is not None:
        return f"credential {credential}"
    return f"${env}" if env is not None else "nowhere"


def read_credential(name: str, environ: Mapping[str, str]) -> str:
    """The credential's text without its one trailing newline; SecretUnavailable says why not (an empty
    one too: a password left out, not a password)."""
    directory = environ.get(CREDENTIALS_DIRECTORY)
    if not directory:
        raise SecretUnavailable(f"credential {name!r}: ${CREDENTIALS_DIRECTORY} is not set (run under systemd "
                                f"with LoadCredential={name}:/path/to/secret in the unit; to check by hand: sudo env "
                                f"{CREDENTIALS_DIRECTORY}=/etc/edge-vlm/credentials edge-vlm check)")
    path = Path(directory) / name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SecretUnavailable(f"credential {name!r}: no such file in ${CREDENTIALS_DIRECTORY} ({directory}); "
                                f"add LoadCredential={name}:/path/to/secret to the unit") from None
    except OSError as exc:
        raise SecretUnavailable(f"credential {name!r} in {directory} cannot be read: {exc.strerror}") from None
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise SecretUnavailable(f"credential {name!r} in {directory} is not UTF-8 text") from None
    if not text.removesuffix("\n"):  # install-service creates the file empty
        raise SecretUnavailable(f"credential {name!r} is empty: put the password in "
                                f"/etc/edge-vlm/credentials/{name} (or wherever the unit's LoadCredential={name}: "
                                "line points), then sudo systemctl restart edge-vlm (credentials are copied at "
                                "start only)")
    return text.removesuffix("\n")


def read_secret(env: str | None, credential: str | None, environ: Mapping[str, str]) -> str | None:
    """The secret from wherever it is configured; None when none is, or when the variable is unset
    (``edge-vlm check`` reports that). A credential that cannot be read raises SecretUnavailable."""
    if credential is not None:
        return read_credential(credential, environ)
    return environ.get(env) if env is not None else None


def secret_problem(env: str | None, credential: str | None, environ: Mapping[str, str]) -> str | None:
    """Why the configured secret is unavailable here (for the start-up checks), or None."""
    if credential is not None:
        try:
            read_credential(credential, environ)
        except SecretUnavailable as exc:
            return str(exc)
    elif env is not None and env not in environ:
        return f"{env!r}: the environment variable is not set"
    return None
