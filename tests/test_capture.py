"""The capture pool's threads: cameras captured for side by side, and a stop that does not wait for
a grab stuck in a source."""

from __future__ import annotations

import logging
import threading

import pytest

from edge_vlm.core.contracts import Origin
from edge_vlm.core.errors import InputError
from edge_vlm.core.stats import Stats
from edge_vlm.frames import capture as capture_module
from edge_vlm.frames.capture import CLOSE_WAIT_S, CapturePool
from edge_vlm.ingest.trigger import Trigger

MARGIN_S = 10.0  # a bound on waiting on a busy machine, not a measure of speed


class Grabs:
    """A capture callback that blocks until released, recording who it serves."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started: dict[str, threading.Event] = {}
        self.refused: list[tuple[str | None, str]] = []
        self.threads: list[threading.Thread] = []

    def __call__(self, trigger: Trigger) -> None:
        self.threads.append(threading.current_thread())
        self.started.setdefault(str(trigger.request_id), threading.Event()).set()
        self.release.wait(60)

    def refuse(self, trigger: Trigger, error: InputError) -> None:
        self.refused.append((trigger.request_id, error.code))

    def wait_started(self, request_id: str) -> bool:
        return self.started.setdefault(request_id, threading.Event()).wait(MARGIN_S)


def test_cameras_are_captured_for_side_by_side_up_to_the_limit() -> None:
    grabs = Grabs()
    pool = CapturePool(2, grabs, grabs.refuse, Stats("test"))
    try:
        pool.submit("a", Trigger("a", Origin.REQUEST, request_id="a1"))
        pool.submit("b", Trigger("b", Origin.REQUEST, request_id="b1"))
        assert grabs.wait_started("a1") and grabs.wait_started("b1")  # both at once
        pool.submit("c", Trigger("c", Origin.REQUEST, request_id="c1"))
        assert "c1" not in grabs.started  # no third thread
        grabs.release.set()
        assert grabs.wait_started("c1")  # served once a thread is free
    finally:
        grabs.release.set()
        pool.close()
    assert grabs.refused == []


def test_close_does_not_wait_for_a_grab_stuck_in_its_source(caplog: pytest.LogCaptureFixture) -> None:
    grabs = Grabs()  # never released: a source stuck in a call nothing can interrupt
    pool = CapturePool(2, grabs, grabs.refuse, Stats("test"))
    pool.submit("front_door", Trigger("front_door", Origin.REQUEST, request_id="r0"))
    pool.submit("front_door", Trigger("front_door", Origin.REQUEST, request_id="r1"))  # waits behind r0
    assert grabs.wait_started("r0")
    closing = threading.Thread(target=pool.close, daemon=True)
    with caplog.at_level(logging.WARNING, logger="edge_vlm.frames.capture"):
        closing.start()
        closing.join(CLOSE_WAIT_S + MARGIN_S)
        assert not closing.is_alive(), "close() waits for the stuck grab"
    assert grabs.refused == [("r1", "cancelled")]
    assert "Still capturing for front_door" in caplog.text
    assert all(thread.daemon for thread in grabs.threads)  # nor does it keep the process alive at exit
    grabs.release.set()


def test_a_trigger_that_replaces_a_waiting_one_keeps_the_clip_it_asked_for() -> None:
    waiting = Trigger("gate", Origin.TRIGGER, request_id="t1", clip=True)
    assert capture_module._superseding(Trigger("gate", Origin.TRIGGER, request_id="t2"), waiting).clip is True
    assert capture_module._superseding(Trigger("gate", Origin.TRIGGER, request_id="t3", clip=False), waiting).clip \
        is False  # its own choice stands
