"""The exceptions edge_vlm raises, in one tree.

    EdgeVlmError
    ├── ConfigError          the YAML file or a value in it is wrong (carries every problem found)
    ├── SecretUnavailable    a configured secret (a password's variable or credential) cannot be read
    ├── InputError           one message from outside is unusable; the daemon answers it and goes on
    │   ├── ImageError       not an image, truncated, too many pixels, too many bytes
    │   ├── TriggerError     malformed trigger JSON, unknown or disabled camera, no frame yet
    │   ├── SourceError      the camera cannot give a frame now: unreachable, refused, stale
    │   └── Refused          the daemon cannot take it now: stopping (``cancelled``), too many waiting (``busy``)
    ├── AnswerError          the model's answer is not the JSON asked for (it is asked again once)
    └── BackendError         the model could not be loaded or could not describe a frame

Every ``InputError`` and ``BackendError`` has an ``ErrorCode`` that goes into the error result on
MQTT, so an automation can branch on it without parsing English: the codes are part of the API.
"""

from __future__ import annotations

from enum import Enum


class WireValue(str, Enum):
    """A string enum whose members are their values wherever they go: JSON, f-strings, MQTT."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class ErrorCode(WireValue):
    """Why an input or a job could not be described: the ``error`` of an error result on MQTT."""

    BAD_IMAGE = "bad_image"
    IMAGE_TOO_LARGE = "image_too_large"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    BAD_TRIGGER = "bad_trigger"
    BAD_REPLY_TOPIC = "bad_reply_topic"
    BAD_IMAGE_TOPIC = "bad_image_topic"
    UNKNOWN_CAMERA = "unknown_camera"
    CAMERA_DISABLED = "camera_disabled"
    CAMERA_UNAVAILABLE = "camera_unavailable"
    AUTH_FAILED = "auth_failed"
    NO_FRAME = "no_frame"
    NO_CLIP = "no_clip"
    STALE_FRAME = "stale_frame"
    BUSY = "busy"
    CANCELLED = "cancelled"
    INTERNAL_ERROR = "internal_error"
    BACKEND_FAILED = "backend_failed"
    BAD_ANSWER = "bad_answer"
    MODEL_UNAVAILABLE = "model_unavailable"
    TIMED_OUT = "timed_out"
    WORKER_CRASHED = "worker_crashed"
    FRIGATE_WRITE_FAILED = "frigate_write_failed"


class EdgeVlmError(Exception):
    """Base of everything edge_vlm raises on purpose."""


class ConfigError(EdgeVlmError):
    """One or more problems in the configuration, each already formatted for a human."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class SecretUnavailable(EdgeVlmError):
    """A configured secret cannot be read; the message says which and why, not its value."""


class InputError(EdgeVlmError):
    """An input that cannot be used; ``code`` names the kind of problem."""

    code: ErrorCode  # each kind's default; an InputError itself is always given one

    def __init__(self, message: str, *, code: ErrorCode | str | None = None, request_id: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = ErrorCode(code)  # ValueError for a code that is not part of the API
        elif not hasattr(self, "code"):
            raise TypeError(f"{type(self).__name__} needs an error code")
        self.request_id = request_id  # the requester's id, when the bad input carried one


class ImageError(InputError):
    code = ErrorCode.BAD_IMAGE


class TriggerError(InputError):
    code = ErrorCode.BAD_TRIGGER


class SourceError(InputError):
    code = ErrorCode.CAMERA_UNAVAILABLE
    status: int | None = None  # the HTTP status a server answered with, where one did


class Refused(InputError):
    """The daemon cannot take the input now: it is stopping, or too many already wait."""

    code = ErrorCode.BUSY


class AnswerError(EdgeVlmError, ValueError):
    """The model's answer is not the JSON asked for; the message says what is wrong, briefly."""


class BackendError(EdgeVlmError):
    """The backend failed to load or to describe a frame; ``code`` goes into the error result."""

    def __init__(self, message: str, *, code: ErrorCode | str = ErrorCode.BACKEND_FAILED) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
