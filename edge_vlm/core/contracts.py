"""The values every stage shares and the MQTT API shows: where a job came from, where a request's
answer goes, an input that could not be described, and request ids."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge_vlm.core.errors import ErrorCode, WireValue

_sequence = itertools.count(1)
_RUN_TAG = os.urandom(3).hex()


class Origin(WireValue):
    """What asked for a description (the ``origin`` of its result and events)."""

    SNAPSHOT = "snapshot"  # an image published to the camera's snapshot topics
    TRIGGER = "trigger"  # the camera's trigger topic, Home Assistant's "Describe now" button
    MOTION = "motion"  # the camera's own motion detection
    INTERVAL = "interval"  # the camera's interval_s
    FRIGATE = "frigate"  # a Frigate event
    REQUEST = "request"  # "ask anything" on <base>/request, answered on its reply topic


# Came by themselves: a newer one replaces one waiting; the camera skips unchanged scenes of them.
AUTOMATIC = frozenset({Origin.SNAPSHOT, Origin.MOTION, Origin.INTERVAL})
# Nobody waits for their answer: the camera's cooldown holds them back, a disabled camera ignores them.
UNASKED = AUTOMATIC | {Origin.FRIGATE}


def new_request_id() -> str:
    """An id for a job that came without one, unique across restarts of the daemon."""
    return f"{_RUN_TAG}-{next(_sequence)}"


@dataclass(frozen=True)
class Reply:
    """Where the answer to a request goes: its response topic, and the correlation data to echo; or,
    for an asker in this process (the HTTP API), ``answer``, called with the answer (the result's or
    the error's payload, as it would be published) instead."""

    topic: str
    correlation: bytes | None = None
    answer: Callable[[dict[str, Any]], None] | None = field(default=None, compare=False, repr=False)
    # ...and, for one that streams the answer, the text as the model writes it, piece by piece (before ``answer``)
    told: Callable[[str], None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Sampling:
    """How the model picks each token, as an asker wants it (the HTTP API's Ollama ``options`` and
    OpenAI parameters); None: the model's configured value (backend.llm)."""

    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None


@dataclass(frozen=True)
class Failure:
    """An input or a job that could not be described; published on the camera's error topic."""

    camera: str
    code: ErrorCode
    message: str
    request_id: str | None = None
    topic: str | None = None  # the topic the input arrived on
    reply: Reply | None = None  # a request's error goes here instead of the camera's error topic
    origin: Origin | None = None  # what the failed job came from
