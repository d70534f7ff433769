"""Backends turn a frame and a prompt into text. One file per backend, chosen by ``backend.type``.

A backend has a small lifecycle: ``load()`` once (vendor libraries are imported there, never at
module import, so the package runs anywhere), ``describe()`` one frame at a time, ``close()`` once.
"""

from __future__ import annotations

from typing import Protocol

from edge_vlm.config.models import OpencvBackendConfig
from edge_vlm.frames import Frame
from edge_vlm.jobs import Description


class Backend(Protocol):
    name: str
    #: decode frames to at least this many pixels on the long side (None: full size)
    min_long_side: int | None

    def load(self) -> None: ...

    def describe(self, frame: Frame, prompt: str) -> Description: ...

    def close(self) -> None: ...


def create_backend(config: OpencvBackendConfig) -> Backend:
    """The backend that ``config`` asks for, not loaded yet."""
    # Imported here so that a backend's heavy or board-only imports happen only when it is used.
    from edge_vlm.backends.opencv import OpencvBackend  # noqa: PLC0415

    return OpencvBackend(config)
