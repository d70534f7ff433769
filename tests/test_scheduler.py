"""Scheduling: latest wins per camera, cameras in arrival order, nothing runs after close."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edge_vlm.frames import Frame
from edge_vlm.jobs import Failure, Job, Reply
from edge_vlm.schedule.scheduler import Scheduler, SchedulerClosed


def job(camera: str, request_id: str) -> Job:
    frame = Frame(camera, np.zeros((1, 1, 3), np.uint8), (1, 1), b"", "JPEG", 0.0)
    return Job(camera, frame, frame.pixels, "prompt", request_id, "snapshot", received_at=0.0)


def test_newer_job_replaces_the_waiting_one_and_keeps_its_turn() -> None:
    scheduler = Scheduler()
    assert scheduler.submit(job("a", "a1")) is None
    scheduler.submit(job("b", "b1"))
    replaced = scheduler.submit(job("a", "a2"))
    assert replaced is not None and replaced.request_id == "a1"
    scheduler.submit(job("a", "a3"))
    assert scheduler.depth == 2
    first, second = scheduler.next(0), scheduler.next(0)
    assert first is not None and second is not None
    assert (first.request_id, first.superseded_ids, first.coalesced) == ("a3", ["a1", "a2"], 2)
    assert second.request_id == "b1"
    assert scheduler.next(0) is None


def test_a_busy_camera_does_not_starve_the_others() -> None:
    scheduler = Scheduler()
    order = []
    scheduler.submit(job("busy", "x0"))
    for n in range(1, 50):
        scheduler.submit(job("quiet", f"q{n}") if n == 10 else job("busy", f"x{n}"))
        if n % 10 == 0:
            taken = scheduler.next(0)
            assert taken is not None
            order.append(taken.camera)
    assert order[:2] == ["busy", "quiet"]


def test_next_waits_for_a_job_and_close_wakes_it() -> None:
    scheduler = Scheduler()
    got: list[Job | None] = []
    waiter = threading.Thread(target=lambda: got.append(scheduler.next(10)))
    waiter.start()
    scheduler.submit(job("a", "a1"))
    waiter.join(10)
    assert got[0] is not None and got[0].request_id == "a1"
    scheduler.submit(job("b", "b1"))
    waiter = threading.Thread(target=lambda: got.append(scheduler.next(10)))
    left = scheduler.close()
    waiter.start()
    waiter.join(10)
    assert [j.request_id for j in left] == ["b1"]
    assert got[1] is None
    with pytest.raises(SchedulerClosed):
        scheduler.submit(job("c", "c1"))


def test_an_automatic_job_never_replaces_one_that_was_asked_for() -> None:
    scheduler = Scheduler()
    asked = job("a", "t1")
    asked.origin = "trigger"
    scheduler.submit(asked)
    motion = job("a", "m1")
    motion.origin = "motion"
    assert scheduler.submit(motion) is motion  # it joins the waiting trigger
    later = job("a", "t2")
    later.origin = "frigate"
    assert scheduler.submit(later) is asked  # a request replaces a request
    taken = scheduler.next(0)
    assert taken is not None
    assert (taken.request_id, taken.superseded_ids) == ("t2", ["m1", "t1"])


def request(camera: str, request_id: str) -> Job:
    asked = job(camera, request_id)
    asked.origin = "request"
    return asked


def test_a_refused_request_is_answered_after_the_earlier_ones_of_its_camera() -> None:
    scheduler = Scheduler()
    refused = [Failure("a", "bad_trigger", "no profile", f"r{n}", reply=Reply(topic="x")) for n in range(3)]
    assert not scheduler.hold(refused[0])  # nothing before it: answered at once
    scheduler.submit(request("a", "a1"))
    assert scheduler.hold(refused[1])  # after a1
    running = scheduler.next(0)
    assert running is not None
    assert scheduler.hold(refused[2])  # after a1, which runs now
    assert not scheduler.hold(Failure("b", "unknown_camera", "?", "b1", reply=Reply(topic="x")))  # other camera
    assert scheduler.finished(running) == [refused[1], refused[2]]
    assert not scheduler.hold(refused[0])  # a1 is answered: nothing to wait for
