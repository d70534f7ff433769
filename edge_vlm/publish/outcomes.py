"""What becomes of each input and job, said on MQTT and in one log line each.

A job's life on a camera's event topic: ``pending`` (and its frame on the image topic) when it is
accepted, then ``described``, ``failed`` or ``superseded`` under the same id. ``accepted`` is
called by the scheduler under its lock, before the worker can take the job, and everything goes
through the one ordered publisher: so no outcome can overtake its ``pending``. A request's answer
or error goes to its reply topic only. An input that cannot become a job is refused with an error
that says why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection

from edge_vlm.core.contracts import AUTOMATIC, Failure, Origin
from edge_vlm.core.errors import ErrorCode
from edge_vlm.core.stats import Stats
from edge_vlm.core.topics import IMAGE, Topics
from edge_vlm.frames import Frame
from edge_vlm.inference.results import Result
from edge_vlm.ingest.trigger import Trigger
from edge_vlm.publish.alerts import Alerts
from edge_vlm.publish.messages import (
    described_image_message,
    event_message,
    failure_event,
    failure_message,
    failure_payload,
    image_message,
    reply_message,
    result_messages,
    result_payload,
    skip_message,
    stream_message,
)
from edge_vlm.publish.publisher import Publisher
from edge_vlm.schedule.job import Job

logger = logging.getLogger(__name__)

# Refusals shown as a failed step on the camera's event entity: of what someone asked for (a
# trigger, Home Assistant's button, a Frigate event). A snapshot's or an interval's refusal goes to
# the error topic (the Last error sensor) only: a camera sending broken images must not flood it.
ASKED = frozenset(Origin) - AUTOMATIC - {Origin.REQUEST}


class Outcomes:
    def __init__(self, topics: Topics, publisher: Publisher, stats: Stats, alerts: Alerts, *,
                 cameras: Collection[str], counters_changed: Callable[[], None],
                 frigate_described: Callable[[str, str, str], None] | None = None) -> None:
        """``cameras``: the configured ones (each has an event entity); ``counters_changed``: the
        diagnostics are due (published by the dispatcher, rate-limited); ``frigate_described``: a
        Frigate event's description, to write back into Frigate (camera, event id, text)."""
        self._frigate_described = frigate_described
        self._topics = topics
        self._cameras = frozenset(cameras)
        self._publisher = publisher
        self._stats = stats
        self._alerts = alerts
        self._counters_changed = counters_changed
        self._image_shown: dict[str, str] = {}  # camera -> id of the job whose frame is on its image topic
        # Held from reading _image_shown to handing the messages to the publisher, so that a camera's
        # image and its description go out as a pair (lock order: scheduler, this, publisher).
        self._showing = threading.Lock()

    # The scheduler's, under its lock: nothing here may block.

    def accepted(self, job: Job, dropped: Job | None) -> None:
        """Notify fast: the image and a ``pending`` event at once; the description follows.
        ``dropped`` will not run: it is superseded (``job`` itself when it joined one waiting)."""
        logger.debug("%s: accepted [%s, id %s, %s]", job.camera, job.origin, job.request_id,
                     timings_text(job.timings_ms))
        if dropped is not None:
            logger.info("%s: superseded after %.0f ms [%s, id %s]: by id %s", dropped.camera,
                        (time.monotonic() - dropped.received_at) * 1000, dropped.origin, dropped.request_id,
                        dropped.superseded_by)
            self._publisher.send(event_message(dropped, "superseded", self._topics, by=dropped.superseded_by))
        if job.reply is None and dropped is not job and job.image is not None:
            with self._showing:
                self._image_shown[job.camera] = job.request_id
                self._publisher.send_all([
                    image_message(job, job.image, self._topics),
                    event_message(job, "pending", self._topics, image_topic=self._topics.camera(job.camera, IMAGE)),
                ])
        self._counters_changed()  # the queue depth

    # Admission's (the dispatcher and the capture threads)

    def refuse(self, failure: Failure, *, held: bool = False) -> None:
        """An input that could not become a job: one log line, one error message (``held``: later,
        when the scheduler hands it back after the camera's earlier requests)."""
        self._stats.count("inputs_refused")
        logger.warning("%s: refused [topic %s, id %s]: %s: %s", failure.camera, failure.topic, failure.request_id,
                       failure.code, failure.message)
        if held:
            return
        self.publish_failure(failure)
        if failure.reply is None and failure.camera in self._cameras and failure.origin in ASKED:
            self._publisher.send(failure_event(failure, self._topics))  # someone waits: the event entity says it

    def skip(self, trigger: Trigger, frame: Frame, reason: str) -> None:
        """A frame not worth describing: one log line, and a result that says so."""
        self._stats.count("jobs_skipped")
        logger.info("%s: skipped [%s, id %s]: %s", trigger.camera, trigger.origin, trigger.request_id, reason)
        self._publisher.send(skip_message(trigger, frame, reason, self._topics))
        self._counters_changed()

    def publish_failure(self, failure: Failure) -> None:
        if failure.reply is not None and failure.reply.answer is not None:  # the asker is in this process
            failure.reply.answer(failure_payload(failure))
        else:
            self._publisher.send(failure_message(failure, self._topics))
        self._counters_changed()

    def stream(self, camera: str, connected: bool, reason: str) -> None:
        """The camera's stream connected or went."""
        self._publisher.send(stream_message(camera, connected, self._topics))

    # The worker's

    def described(self, job: Job, result: Result) -> None:
        latency_ms = (time.monotonic() - job.received_at) * 1000
        publishing = time.perf_counter()
        if job.reply is not None and job.reply.answer is not None:  # the asker is in this process
            job.reply.answer(result_payload(result, latency_ms=latency_ms).as_dict())
        elif job.reply is not None:
            self._publisher.send(reply_message(job.reply, result_payload(result, latency_ms=latency_ms)))
        else:
            fired = self._alerts.check(result)
            payload = result_payload(result, latency_ms=latency_ms, alerts=fired.names)
            # The described frame (its own entity: a later job's "pending" cannot take it away), the
            # description, then the alerts it fired, which belong to it.
            described_image = [] if job.image is None else [described_image_message(job, job.image, self._topics)]
            messages = [*described_image, *result_messages(payload, self._topics),
                        event_message(job, "described", self._topics, **payload.event_values()), *fired.messages]
            with self._showing:
                # A later job's frame went out when it was accepted: the description goes with its own frame.
                if job.image is not None and self._image_shown.get(job.camera) != job.request_id:
                    self._image_shown[job.camera] = job.request_id
                    messages.insert(0, image_message(job, job.image, self._topics))
                self._publisher.send_all(messages)
            if self._frigate_described is not None and (job.event or {}).get("source") == "frigate" and job.request_id:
                self._frigate_described(job.camera, job.request_id, result.description.text)
        timings = {**result.timings_ms, "publish": round((time.perf_counter() - publishing) * 1000, 2)}
        npu = result.npu
        self._stats.job_done(latency_ms, timings, camera=job.camera or "requests",
                             npu_s=None if npu is None else npu["seconds"])
        self._counters_changed()
        logger.info("%s: described in %.0f ms [%s, id %s, %s]: %s", job.camera or "request", latency_ms, job.origin,
                    job.request_id, timings_text(timings), result.description.text)

    def failed(self, job: Job, code: ErrorCode, message: str, *, queued_ms: float | None = None) -> None:
        """``queued_ms``: how long it waited for the backend, when it ran."""
        self._stats.count("jobs_failed")
        timings = job.timings_ms if queued_ms is None else {**job.timings_ms, "queued": queued_ms}
        logger.warning("%s: failed after %.0f ms [%s, id %s, %s]: %s: %s", job.camera or "request",
                       (time.monotonic() - job.received_at) * 1000, job.origin, job.request_id,
                       timings_text(timings), code, message)
        self.publish_failure(Failure(job.camera, code, message, job.request_id, None, job.reply, job.origin))
        if job.reply is None:
            self._publisher.send(event_message(job, "failed", self._topics, error=code, message=message))


def timings_text(timings: dict[str, float]) -> str:
    return " ".join(f"{stage} {ms:.0f}" for stage, ms in timings.items()) + " ms"
