"""The exceptions edge_vlm raises, in one tree.

    EdgeVlmError
    ├── ConfigError          the YAML file or a value in it is wrong (carries every problem found)
    ├── InputError           one message from outside is unusable; the daemon answers it and goes on
    │   ├── ImageError       not an image, truncated, too many pixels, too many bytes
    │   ├── TriggerError     malformed trigger JSON, unknown or disabled camera, no frame yet
    │   └── SourceError      the camera cannot give a frame now: unreachable, refused, stale
    └── BackendError         the model could not be loaded or could not describe a frame

Every ``InputError`` has a short machine-readable ``code`` that goes into the error result on MQTT,
so an automation can branch on it without parsing English.
"""

from __future__ import annotations


class EdgeVlmError(Exception):
    """Base of everything edge_vlm raises on purpose."""


class ConfigError(EdgeVlmError):
    """One or more problems in the configuration, each already formatted for a human."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class InputError(EdgeVlmError):
    """An input that cannot be used; ``code`` names the kind of problem."""

    code = "bad_input"

    def __init__(self, message: str, *, code: str | None = None, request_id: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.request_id = request_id  # the requester's id, when the bad input carried one


class ImageError(InputError):
    code = "bad_image"


class TriggerError(InputError):
    code = "bad_trigger"


class SourceError(InputError):
    code = "camera_unavailable"


class BackendError(EdgeVlmError):
    """The backend failed to load or to describe a frame; ``code`` goes into the error result."""

    def __init__(self, message: str, *, code: str = "backend_failed") -> None:
        super().__init__(message)
        self.code = code
