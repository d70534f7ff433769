"""Backends turn a frame and a prompt into text, chosen by ``backend.type``.

A backend has a small lifecycle: ``load()`` once (vendor libraries are imported there, never at
module import, so the package runs anywhere), ``prepare()`` a frame (CPU work, done on the
dispatcher thread while the backend is still busy with the previous frame), ``describe()`` one
prepared frame at a time, ``close()`` once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

import numpy as np

from edge_vlm.config.models import OpencvBackendConfig
from edge_vlm.config.vlm import VlmBackendConfig
from edge_vlm.core.contracts import Sampling
from edge_vlm.frames import Frame
from edge_vlm.inference.results import Description

Told = Callable[[str], None]  # a piece of the answer, as the model writes it


class Chat(Protocol):
    """Questions about one frame, in order (``Backend.conversation``)."""

    def ask(self, prompt: str, *, max_new_tokens: int | None = None, alone: str | None = None,
            sampling: Sampling | None = None, told: Told | None = None) -> Description:
        """``prompt`` after what was said; ``alone``: the question as it stands alone (a retry with
        its question), asked when the frame must be read again; ``told``: called with the answer's
        text as the model writes it, where the backend can (else its answer says it whole)."""
        ...


class Backend(Protocol):
    name: str
    #: decode frames to at least this many pixels on the long side (None: full size)
    min_long_side: int | None
    #: answers a question without an image (the language model alone)
    answers_text: bool

    def load(self) -> None: ...

    def prepare(self, frame: Frame) -> np.ndarray: ...

    def describe(self, prepared: np.ndarray | None, frame: Frame | None, prompt: str) -> Description:
        """One question about the frame (None: without an image, where ``answers_text``)."""
        ...

    def conversation(self, prepared: np.ndarray | None, frame: Frame | None) -> AbstractContextManager[Chat]:
        """Several questions about the frame: the vlm reads it once (one encoder pass, its image
        tokens prefilled once) and answers each from what it kept; forgotten when the block ends.
        None: questions without an image (where ``answers_text``)."""
        ...

    def begin_job(self) -> None:
        """The runner's job begins: its questions until ``end_job()`` are the ones ``abort`` fails."""
        ...

    def end_job(self) -> None: ...

    def abort(self, why: str = "the daemon is stopping") -> None:
        """Stop the job in flight as soon as possible (it fails ``cancelled``: aborted, ``why``): the
        question on the model, and any it asks next; called from another thread."""
        ...

    def on_availability(self, listener: Callable[[bool, str], None]) -> None:
        """Call ``listener(available, reason)`` whenever the model comes or goes."""
        ...

    def close(self) -> None: ...


class OneByOne:
    """A chat for a backend that keeps nothing of a frame: each question is a ``describe``."""

    def __init__(self, backend: Backend, prepared: np.ndarray | None, frame: Frame | None) -> None:
        self._backend, self._prepared, self._frame = backend, prepared, frame

    def ask(self, prompt: str, *, max_new_tokens: int | None = None, alone: str | None = None,
            sampling: Sampling | None = None, told: Told | None = None) -> Description:
        return self._backend.describe(self._prepared, self._frame, alone or prompt)


@contextmanager
def one_by_one(backend: Backend, prepared: np.ndarray | None, frame: Frame | None) -> Iterator[Chat]:
    yield OneByOne(backend, prepared, frame)


def create_backend(config: OpencvBackendConfig | VlmBackendConfig, log_level: str = "INFO") -> Backend:
    """The backend that ``config`` asks for, not loaded yet."""
    # Imported here so that a backend's heavy imports happen only when it is used.
    if isinstance(config, VlmBackendConfig):
        from edge_vlm.inference.backends.vlm import VlmBackend  # noqa: PLC0415

        return VlmBackend(config, log_level)
    from edge_vlm.inference.backends.opencv import OpencvBackend  # noqa: PLC0415

    return OpencvBackend(config, log_level)
