"""What becomes of each input and job, said on MQTT and in one log line each.

A job's life on a camera's event topic: ``pending`` (and its frame on the image topic) when it is
accepted, then ``described``, ``failed`` or ``superseded`` under the same id. A request's answer or
error goes to its reply topic only, in its turn after the camera's earlier requests. An input that
cannot become a job is refused with an error that says why.

Called from the dispatcher, the capture threads and the worker: nothing here blocks for long (a
job's outcome waits at most ``ANNOUNCE_WAIT_S`` for its ``pending`` to go out first).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from edge_vlm.config.models import AppConfig
from edge_vlm.jobs import Failure, Job, Result
from edge_vlm.publish.alerts import Alerts
from edge_vlm.publish.messages import (
    event_message,
    failure_message,
    image_message,
    reply_message,
    result_messages,
    result_payload,
    skip_message,
)
from edge_vlm.publish.publisher import Publisher
from edge_vlm.schedule.scheduler import Scheduler
from edge_vlm.stats import Stats
from edge_vlm.topics import IMAGE, Topics

logger = logging.getLogger(__name__)

ANNOUNCE_WAIT_S = 5.0  # a job's outcome waits at most this for its "pending" to be published


class Outcomes:
    def __init__(self, config: AppConfig, publisher: Publisher, stats: Stats, *, scheduler: Scheduler,
                 alerts: Alerts, diagnostics: Callable[[], None]) -> None:
        """``diagnostics``: publish the counters (rate-limited by the caller)."""
        self._config = config
        self._topics = Topics.from_config(config)
        self._publisher = publisher
        self._stats = stats
        self._scheduler = scheduler
        self._alerts = alerts
        self._diagnostics = diagnostics
        self._image_shown: dict[str, str] = {}  # camera -> id of the job whose frame is on its image topic

    # The intake's (dispatcher and capture threads)

    def accepted(self, job: Job, replaced: Job | None) -> None:
        """Notify fast: the image and a ``pending`` event at once; the description follows.
        A job that joined one waiting (``replaced is job``) will not run: it is superseded at once."""
        logger.debug("%s: accepted [%s, id %s, %s]", job.camera, job.origin, job.request_id,
                     timings_text(job.timings_ms))
        try:
            if replaced is not None:
                logger.info("%s: superseded after %.0f ms [%s, id %s]: by id %s", replaced.camera,
                            (time.monotonic() - replaced.received_at) * 1000, replaced.origin, replaced.request_id,
                            replaced.superseded_by)
                if replaced is not job:  # its "pending" may still be on its way, from another thread
                    replaced.announced.wait(ANNOUNCE_WAIT_S)
                self._publisher.send(event_message(replaced, "superseded", self._topics, by=replaced.superseded_by))
            if job.reply is None and replaced is not job:
                job.image = job.frame.jpeg(self._config.limits.max_published_image_bytes)
                self._image_shown[job.camera] = job.request_id
                self._publisher.send_all([
                    image_message(job, job.image, self._topics),
                    event_message(job, "pending", self._topics, image_topic=self._topics.camera(job.camera, IMAGE)),
                ])
        finally:
            job.announced.set()  # the worker may publish its outcome now
        self._diagnostics()  # the queue depth

    def refuse(self, failure: Failure) -> None:
        """An input that could not become a job: one log line, one error message."""
        self._stats.count("inputs_refused")
        logger.warning("%s: refused [topic %s, id %s]: %s: %s", failure.camera, failure.topic, failure.request_id,
                       failure.code, failure.message)
        if failure.reply is not None and self._scheduler.hold(failure):
            return  # answered after the camera's earlier requests
        self.publish_failure(failure)

    def skip(self, job: Job, reason: str) -> None:
        """A frame not worth describing: one log line, and a result that says so."""
        self._stats.count("jobs_skipped")
        logger.info("%s: skipped [%s, id %s]: %s", job.camera, job.origin, job.request_id, reason)
        self._publisher.send(skip_message(job, reason, self._topics))
        self._diagnostics()

    def publish_failure(self, failure: Failure) -> None:
        self._publisher.send(failure_message(failure, self._topics))
        self._diagnostics()

    # The worker's

    def described(self, job: Job, result: Result) -> None:
        latency_ms = (time.monotonic() - job.received_at) * 1000
        job.announced.wait(ANNOUNCE_WAIT_S)
        publishing = time.perf_counter()
        if job.reply is not None:
            self._publisher.send(reply_message(job.reply, result_payload(result, latency_ms=latency_ms)))
        else:
            fired = self._alerts.check(result)
            payload = result_payload(result, latency_ms=latency_ms, alerts=fired)
            # A later job's frame went out when it was accepted: the description goes with its own frame.
            image = []
            if job.image is not None and self._image_shown.get(job.camera) != job.request_id:
                self._image_shown[job.camera] = job.request_id
                image = [image_message(job, job.image, self._topics)]
            self._publisher.send_all([*image, *result_messages(payload, self._topics),
                                      event_message(job, "described", self._topics, **_event_values(payload))])
        timings = {**result.timings_ms, "publish": round((time.perf_counter() - publishing) * 1000, 2)}
        self._stats.job_done(latency_ms, timings)
        self._diagnostics()
        logger.info("%s: described in %.0f ms [%s, id %s, %s]: %s", job.camera or "request", latency_ms, job.origin,
                    job.request_id, timings_text(timings), result.description.text)

    def failed(self, job: Job, code: str, message: str) -> None:
        job.announced.wait(ANNOUNCE_WAIT_S)  # "failed" never comes before "pending"
        self._stats.count("jobs_failed")
        logger.warning("%s: failed after %.0f ms [%s, id %s, %s]: %s: %s", job.camera or "request",
                       (time.monotonic() - job.received_at) * 1000, job.origin, job.request_id,
                       timings_text(job.timings_ms), code, message)
        self.publish_failure(Failure(job.camera, code, message, job.request_id, None, job.reply, job.origin))
        if job.reply is None:
            self._publisher.send(event_message(job, "failed", self._topics, error=code, message=message))


def _event_values(payload: dict[str, Any]) -> dict[str, Any]:
    """What a ``described`` event carries: enough for a notification, no more."""
    keys = ("description", "text", "title", "fields", "alerts", "latency_ms", "frame_time", "superseded_ids")
    return {key: payload[key] for key in keys}


def timings_text(timings: dict[str, float]) -> str:
    # A copy first: the worker thread may add its stages to a job's timings while the dispatcher
    # logs its acceptance (dict() copies in one step under the GIL; iterating did not: RuntimeError).
    return " ".join(f"{stage} {ms:.0f}" for stage, ms in dict(timings).items()) + " ms"
