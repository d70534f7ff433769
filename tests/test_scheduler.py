"""Scheduling: latest wins per camera, cameras in arrival order, nothing runs after close, and a
job's acceptance is announced before the worker can take it."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edge_vlm.camera_state import CameraStates
from edge_vlm.config.models import AppConfig
from edge_vlm.core.contracts import Failure, Origin, Reply
from edge_vlm.core.errors import ErrorCode, Refused
from edge_vlm.core.stats import Stats
from edge_vlm.frames import Frame
from edge_vlm.inference.runner import Runner
from edge_vlm.schedule.job import Job
from edge_vlm.schedule.scheduler import Scheduler


def job(camera: str, request_id: str, origin: Origin = Origin.SNAPSHOT) -> Job:
    frame = Frame(camera, np.zeros((1, 1, 3), np.uint8), (1, 1), b"", "JPEG", 0.0)
    return Job(camera, frame, frame.pixels, "prompt", request_id, origin, received_at=0.0)


class Announced:
    """The scheduler's ``accepted`` callback: (job id, id of the job that will not run)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def __call__(self, accepted: Job, dropped: Job | None) -> None:
        self.calls.append((accepted.request_id, None if dropped is None else dropped.request_id))


def scheduler_with(announced: Announced | None = None) -> Scheduler:
    return Scheduler(Stats("test"), announced or Announced())


def test_newer_job_replaces_the_waiting_one_and_keeps_its_turn() -> None:
    announced = Announced()
    scheduler = scheduler_with(announced)
    scheduler.submit(job("a", "a1"))
    scheduler.submit(job("b", "b1"))
    scheduler.submit(job("a", "a2"))
    assert announced.calls == [("a1", None), ("b1", None), ("a2", "a1")]
    scheduler.submit(job("a", "a3"))
    assert scheduler.depth == 2
    first, second = scheduler.next(0), scheduler.next(0)
    assert first is not None and second is not None
    assert (first.request_id, first.superseded_ids, first.coalesced) == ("a3", ["a1", "a2"], 2)
    assert second.request_id == "b1"
    assert scheduler.next(0) is None


def test_a_busy_camera_does_not_starve_the_others() -> None:
    scheduler = scheduler_with()
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
    scheduler = scheduler_with()
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
    with pytest.raises(Refused) as refused:
        scheduler.submit(job("c", "c1"))
    assert refused.value.code == ErrorCode.CANCELLED


def test_an_automatic_job_never_replaces_one_that_was_asked_for() -> None:
    announced = Announced()
    scheduler = scheduler_with(announced)
    scheduler.submit(job("a", "t1", Origin.TRIGGER))
    scheduler.submit(job("a", "m1", Origin.MOTION))
    scheduler.submit(job("a", "t2", Origin.TRIGGER))
    # The motion job joins the waiting trigger (it will not run); a trigger replaces a trigger.
    assert announced.calls == [("t1", None), ("m1", "m1"), ("t2", "t1")]
    taken = scheduler.next(0)
    assert taken is not None
    assert (taken.request_id, taken.superseded_ids) == ("t2", ["m1", "t1"])


def request(camera: str, request_id: str) -> Job:
    return job(camera, request_id, Origin.REQUEST)


def test_a_refused_request_is_answered_after_the_earlier_ones_of_its_camera() -> None:
    scheduler = scheduler_with()
    refused = [Failure("a", ErrorCode.BAD_TRIGGER, "no profile", f"r{n}", reply=Reply(topic="x"))
               for n in range(3)]
    assert not scheduler.hold(refused[0])  # nothing before it: answered at once
    scheduler.submit(request("a", "a1"))
    scheduler.submit(job("a", "f1", Origin.FRIGATE))  # a Frigate event waiting after it does not count
    assert scheduler.hold(refused[1])  # after a1
    running = scheduler.next(0)
    assert running is not None
    assert scheduler.hold(refused[2])  # after a1, which runs now
    assert not scheduler.hold(Failure("b", ErrorCode.UNKNOWN_CAMERA, "?", "b1", reply=Reply(topic="x")))
    assert scheduler.finished(running) == [refused[1], refused[2]]
    assert not scheduler.hold(refused[0])  # a1 is answered, f1 is no request: nothing to wait for


def test_requests_wait_in_order_and_too_many_are_refused_busy() -> None:
    scheduler = scheduler_with()
    for n in range(32):
        scheduler.submit(request("a", f"r{n}"))
    with pytest.raises(Refused) as refused:
        scheduler.submit(request("a", "r32"))
    assert refused.value.code == ErrorCode.BUSY
    scheduler.submit(job("a", "s1"))  # the camera's latest-wins slot is not counted with its requests
    taken = [scheduler.next(0) for _ in range(34)]
    assert [t.request_id if t else None for t in taken] == [*(f"r{n}" for n in range(32)), "s1", None]


def test_the_worker_cannot_take_a_job_before_its_acceptance_is_announced() -> None:
    taken: list[Job | None] = []
    worker = threading.Thread(target=lambda: taken.append(scheduler.next(5)))
    blocked_while_announcing: list[bool] = []

    def announce(accepted: Job, dropped: Job | None) -> None:
        worker.start()
        worker.join(0.2)  # it waits for the scheduler's lock, which the announcement holds
        blocked_while_announcing.append(worker.is_alive())

    scheduler = Scheduler(Stats("test"), announce)
    scheduler.submit(job("a", "a1"))
    worker.join(5)
    assert blocked_while_announcing == [True]
    assert [t.request_id if t else None for t in taken] == ["a1"]


class Failed:
    """The runner's outcomes: the jobs failed, by id and code (nothing else is expected here)."""

    def __init__(self) -> None:
        self.jobs: list[tuple[str, ErrorCode, str]] = []

    def described(self, job: Job, result: object) -> None:
        raise AssertionError(f"job {job.request_id} ran")

    def failed(self, job: Job, code: ErrorCode, message: str, *, queued_ms: float | None = None) -> None:
        self.jobs.append((job.request_id, code, message))

    def publish_failure(self, failure: Failure) -> None:
        raise AssertionError(f"unexpected failure {failure}")


class Aborts:
    """A backend that is only ever aborted here."""

    def __init__(self) -> None:
        self.aborted: list[str] = []

    def abort(self, why: str = "the daemon is stopping") -> None:
        self.aborted.append(why)

    def begin_job(self) -> None:
        raise AssertionError("a cancelled job began")

    def end_job(self) -> None:
        raise AssertionError("a cancelled job ended")


def test_a_cancelled_request_leaves_the_queue_or_fails_when_begun_and_is_let_be_once_answered() -> None:
    scheduler = scheduler_with()
    outcomes, backend = Failed(), Aborts()
    states = CameraStates(AppConfig.model_validate({"cameras": [{"id": "a"}]}))
    runner = Runner(scheduler, backend, states, outcomes)  # type: ignore[arg-type]  # only abort() is used
    for request_id in ("r1", "r2", "r3"):
        scheduler.submit(job("", request_id, Origin.REQUEST))

    runner.cancel("", "r2", "the client went away")  # waiting: taken from the queue, failed at once
    assert outcomes.jobs == [("r2", ErrorCode.CANCELLED, "cancelled before it ran: the client went away")]
    assert scheduler.depth == 2

    taken = scheduler.next(0)  # r1, taken by the worker, not begun
    assert taken is not None and taken.request_id == "r1"
    runner.cancel("", "r1", "gone too")
    runner.serve(taken)  # the worker begins it: cancelled, never run
    assert outcomes.jobs[-1] == ("r1", ErrorCode.CANCELLED, "cancelled before it ran: gone too")
    runner.cancel("", "r1", "answered already")  # nothing left of it: nothing happens
    assert (len(outcomes.jobs), backend.aborted, scheduler.depth) == (2, [], 1)
