"""The daemon: wires the connection, intake, scheduler, backend and publisher together.

Threads:
- paho's network thread: callbacks only put events into the inbox;
- the dispatcher: handles events in order (connect → subscribe and announce; messages → intake);
- the worker: runs one job at a time on the backend and publishes its result;
- capture threads (edge_vlm.frames.capture), the alerts' timer (edge_vlm.publish.alerts).

What becomes of each input and job, on MQTT and in the log, is edge_vlm.publish.outcomes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from paho.mqtt.client import topic_matches_sub

from edge_vlm.board import BoardMonitor
from edge_vlm.cameras import Cameras
from edge_vlm.config.models import AppConfig
from edge_vlm.errors import BackendError
from edge_vlm.inference.answers import answer
from edge_vlm.inference.backends import Backend, create_backend
from edge_vlm.ingest.controls import Controls
from edge_vlm.ingest.frigate import FrigateEvents
from edge_vlm.ingest.requests import RetainedImages
from edge_vlm.intake import Intake
from edge_vlm.jobs import Job
from edge_vlm.mqtt.connection import MqttConnection
from edge_vlm.mqtt.inbox import Connected, Event, Inbox, Received
from edge_vlm.publish.alerts import Alerts
from edge_vlm.publish.discovery import discovery_messages, removal_message
from edge_vlm.publish.outcomes import Outcomes
from edge_vlm.publish.publisher import Publisher
from edge_vlm.schedule.scheduler import Scheduler
from edge_vlm.stats import Stats, diagnostics_message, model_state_message
from edge_vlm.topics import SNAPSHOT, TRIGGER, Outbound, Topics

logger = logging.getLogger(__name__)

POLL_S = 0.2
DIAGNOSTICS_EVERY_S = 1.0  # at most this often: a flood of bad input must not flood the broker
STOP_GRACE_S = 10.0  # the job in flight may finish within this; after it, it is aborted


class Service:
    def __init__(self, config: AppConfig, password: str | None, backend: Backend | None = None,
                 environ: Mapping[str, str] | None = None, *, backend_loaded: bool = False,
                 stats: Stats | None = None) -> None:
        """``environ``: where the cameras' secrets are read (password_env, and $CREDENTIALS_DIRECTORY for
        password_credential); default os.environ. ``backend_loaded``: ``backend`` is loaded already (a
        reload keeps the model of the service it replaces), start() must not load it again. ``stats``: the
        counters to go on with (a reload's)."""
        self.config = config
        self._backend_loaded = backend_loaded
        # Called on each turn of the dispatcher loop: systemd's watchdog keep-alive (edge_vlm.systemd).
        self.heartbeat: Callable[[], None] = _no_heartbeat
        self.topics = Topics.from_config(config)
        self.backend = backend or create_backend(config.backend, config.logging.level)
        self.stats = stats or Stats(self.backend.name)
        self.stats.backend = self.backend.name
        self.board = BoardMonitor()
        limits = config.limits
        self.inbox = Inbox(limits.inbound_queue, limits.inbound_queue_mb * 1_000_000,
                           precious=self._asked_for, latest_wins=self._is_snapshot)
        self.scheduler = Scheduler()
        self.connection = MqttConnection(config, password, self.inbox)
        self.publisher = Publisher(self.connection, config.mqtt.max_queued_messages)
        self.cameras = Cameras(config, os.environ if environ is None else environ, self.publisher,
                               self.backend.min_long_side)
        self._switches: dict[tuple[str, str], bool] = {}  # (camera, enabled|motion) -> on
        self.controls = Controls(config, self.publisher, self._apply_control)
        self.alerts = Alerts(config, self.publisher)
        self.outcomes = Outcomes(config, self.publisher, self.stats, scheduler=self.scheduler, alerts=self.alerts,
                                 diagnostics=self._publish_diagnostics)
        self.intake = Intake(config, self.scheduler, self.outcomes, self.stats, backend=self.backend,
                             sources=self.cameras.sources, controls=self.controls, questions=self.alerts.questions,
                             images=RetainedImages(self.connection.subscribe, self.connection.unsubscribe))
        self.cameras.attach(self.intake)
        self.frigate = FrigateEvents(config, self.intake)
        replay_only = [self.topics.any_camera_device_config, *self.controls.replay_only()]
        self.connection.subscribe_on_connect(self._subscriptions(), replay_only)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._diagnostics_sent = 0.0
        self._diagnostics_due = False
        self._sync_token = os.urandom(8).hex().encode()
        # Set once our sync message came back after the first connect: subscribed, the retained
        # settings read back, discovery sent. What is published to us from then on is heard.
        self.serving = threading.Event()

    def start(self) -> None:
        """Load the backend, then connect; raises BackendError if the backend cannot load."""
        if "backend" not in self.config.model_fields_set:
            logger.info("No backend configured: using the built-in opencv analyzer (no NPU model)")
        if self._backend_loaded:
            logger.info("Backend %s kept loaded", self.backend.name)
        else:
            started = time.perf_counter()
            self.backend.load()
            logger.info("Backend %s loaded in %.0f ms", self.backend.name, (time.perf_counter() - started) * 1000)
        self._model_availability(True, "loaded")
        # Weakly: a backend kept across a reload must not keep the replaced service alive.
        self.backend.on_availability(_weak_listener(self._model_availability))
        self.controls.configured()
        self.alerts.start()
        self.cameras.start()
        self.connection.start()
        for name, target in (("dispatcher", self._dispatch_loop), ("worker", self._work_loop)):
            thread = threading.Thread(target=target, name=f"edge_vlm-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, grace: float = STOP_GRACE_S, *, close_backend: bool = True) -> None:
        """Take no more work, finish or abort the job in flight, publish ``offline``, disconnect;
        ``close_backend=False`` leaves the backend loaded for the service that replaces this one."""
        if self._stopping.is_set():
            return
        logger.info("Stopping")
        self._stopping.set()
        try:
            # In the order work flows: no new messages, no new frames, no new jobs, then the job in flight.
            for thread in self._threads[:1]:  # the dispatcher
                thread.join(grace)
            self.cameras.stop()
            self.intake.close()
            for job in self.scheduler.close():
                self.outcomes.failed(job, "cancelled", "the daemon stopped before this job ran")
                for failure in job.held:
                    self.outcomes.publish_failure(failure)
            self._join_worker(grace)
            self._answer_the_inbox()  # until the connection goes, right after this
            self.alerts.stop()
            self._publish_diagnostics(now=True)
        finally:
            self.connection.stop()
            if close_backend:
                self.backend.close()
        logger.info("Stopped")

    def _answer_the_inbox(self) -> None:
        """What arrived after the dispatcher stopped: requests and triggers get "cancelled" (the
        capture pool and the scheduler are closed), settings are still taken."""
        while (event := self.inbox.get(0)) is not None:
            if isinstance(event, Received):
                try:
                    self._dispatch(event)
                except Exception:
                    logger.exception("Unexpected error while handling %s", event)

    @property
    def stopped(self) -> bool:
        """Its threads have ended (after stop()): nothing of it uses the backend any more."""
        return self._stopping.is_set() and not any(thread.is_alive() for thread in self._threads)

    def _join_worker(self, grace: float) -> None:
        for thread in self._threads[1:]:
            thread.join(grace)
            if thread.is_alive():
                logger.warning("The job in flight is still running after %.0f s: aborting it", grace)
                self.backend.abort()
                thread.join(grace)
            if thread.is_alive():
                logger.error("Thread %s did not stop", thread.name)

    # Dispatcher thread

    def _dispatch_loop(self) -> None:
        while not self._stopping.is_set():
            if not self.connection.stuck():  # else systemd's watchdog restarts the daemon
                self.heartbeat()
            event = self.inbox.get(POLL_S)
            if event is not None and not self._stopping.is_set():
                try:
                    self._dispatch(event)
                except Exception:  # one bad event must not stop the daemon
                    logger.exception("Unexpected error while handling %s", event)
            self.inbox.summary()
            self.connection.check_acknowledgements()
            self.publisher.flush()
            if self._diagnostics_due or self._diagnostics_stale():
                self._publish_diagnostics()

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, Connected):
            self._announce()
            return
        self.intake.images.offer(event)  # a request may wait for this topic's retained image
        if event.topic == self.config.discovery.ha_status_topic:
            # Home Assistant restarted: it lost our entities until they are announced again.
            # Its retained "online" arrives on every subscribe and needs nothing.
            if event.payload.strip() == b"online" and not event.retain:
                logger.info("Home Assistant is online: announcing discovery again")
                self._announce()
        elif event.topic == self.topics.sync:
            if event.payload == self._sync_token:
                self.controls.synced()
                self.serving.set()
        elif topic_matches_sub(self.topics.any_camera_device_config, event.topic):
            self._remove_if_stale(event)
        elif self.controls.handles(event.topic):
            self.controls.handle(event)
        elif self.frigate.handles(event.topic):
            self.frigate.handle(event)
            if event.topic.endswith("/snapshot"):  # it may also be one of a camera's snapshot_topics
                self.intake.handle(event)
        else:
            self.intake.handle(event)

    # paho's network thread: which messages the inbox keeps longest, and which it coalesces.

    def _asked_for(self, topic: str) -> bool:
        """A request or a trigger: someone waits for its answer."""
        return topic == self.topics.request or self.topics.camera_of(topic, TRIGGER) is not None

    def _is_snapshot(self, topic: str) -> bool:
        return self.topics.camera_of(topic, SNAPSHOT) is not None or any(
            topic_matches_sub(f, topic) for camera in self.config.cameras for f in camera.snapshot_topics)

    def _subscriptions(self) -> list[str]:
        # Shared with the other boards of the group: the broker hands each message to one of them.
        shared = [self.topics.request, *self.frigate.shared_subscriptions()]
        if self.config.mqtt.shared_group is not None:
            shared = [f"$share/{self.config.mqtt.shared_group}/{f}" for f in shared]
        filters = [*self.intake.subscriptions(), *self.controls.subscriptions(), *self.frigate.subscriptions(),
                   *shared, self.topics.sync]
        if self.config.discovery.enabled:
            filters += [self.config.discovery.ha_status_topic, self.topics.any_camera_device_config]
        return filters

    def _announce(self) -> None:
        if self.config.discovery.enabled:
            for message in discovery_messages(self.config, self.topics):
                self.connection.publish(message)
        self._publish_diagnostics(now=True)
        self.publisher.republish()
        # Comes back after the retained messages our subscriptions replay (see Cameras.synced).
        self.connection.publish(Outbound(self.topics.sync, self._sync_token, retain=False))

    def _model_availability(self, available: bool, reason: str) -> None:
        self.publisher.send(model_state_message(self.topics, available=available, reason=reason))

    def _remove_if_stale(self, event: Received) -> None:
        """A camera this node announced before but is no longer configured: remove it from HA."""
        camera = event.topic.split("/")[-2]
        if event.payload and self.config.camera(camera) is None:
            logger.info("Camera %r is no longer configured: removing its Home Assistant device", camera)
            self.connection.publish(removal_message(event.topic))

    def _apply_control(self, camera: str, name: str, value: Any) -> None:
        """A setting changed (or was read back): motion detection runs when the camera is on and
        its motion switch is too."""
        if name in ("enabled", "motion"):
            self._switches[camera, name] = bool(value)
        detector = self.cameras.detectors.get(camera)
        if detector is not None:
            detector.enabled = self._switches.get((camera, "enabled"), True) and self._switches.get(
                (camera, "motion"), False)

    def _publish_diagnostics(self, *, now: bool = False) -> None:
        """Publish the counters, or leave it to the dispatcher if they went out less than 1 s ago."""
        if not now and time.monotonic() - self._diagnostics_sent < DIAGNOSTICS_EVERY_S:
            self._diagnostics_due = True
            return
        self._diagnostics_due = False
        self._diagnostics_sent = time.monotonic()
        worker_pid = getattr(self.backend, "worker_pid", None)  # the vlm backend's inference worker
        values = self.stats.values(
            queue_depth=self.scheduler.depth, inbox_waiting=self.inbox.waiting, inbox_dropped=self.inbox.dropped,
            inbox_replaced=self.inbox.replaced, outbox_waiting=self.publisher.backlog,
            outbox_dropped=self.publisher.dropped,
            broker_ack_timeouts=self.connection.ack_timeouts, motion_cpu_s=self.cameras.motion_cpu(),
            **self.board.values(worker_pid if isinstance(worker_pid, int) else None),
        )
        self.publisher.send(diagnostics_message(self.topics, values))

    def _diagnostics_stale(self) -> bool:
        """Time for the periodic diagnostics (temperature, memory, NPU load change while nothing happens)."""
        return time.monotonic() - self._diagnostics_sent >= self.config.diagnostics.interval_s

    # Worker thread

    def _work_loop(self) -> None:
        while True:
            job = self.scheduler.next(POLL_S)
            if job is None:
                if self._stopping.is_set():
                    return
                continue
            try:
                self._run(job)
            except Exception:  # the worker must outlive any one job
                logger.exception("Unexpected error while running job %s", job.request_id)
            for failure in self.scheduler.finished(job):  # later requests' errors, in their turn
                self.outcomes.publish_failure(failure)

    def _run(self, job: Job) -> None:
        job.timings_ms["queued"] = round((time.monotonic() - job.queued_at) * 1000, 2)
        try:
            result = answer(self.backend, job)
        except BackendError as exc:
            self.outcomes.failed(job, exc.code, str(exc))
            return
        except Exception as exc:
            logger.exception("Backend %s failed on job %s", self.backend.name, job.request_id)
            self.outcomes.failed(job, "backend_failed", f"{type(exc).__name__}: {exc}")
            return
        if job.reply is None:
            # The camera's last description ({previous}, its cooldown) is this one before anyone hears of it.
            self.intake.described(job, result.text)
        self.outcomes.described(job, result)


def _no_heartbeat() -> None:
    pass


def _weak_listener(method: Callable[[bool, str], None]) -> Callable[[bool, str], None]:
    """``method``, called only while its object lives."""
    ref = weakref.WeakMethod(method)

    def listener(available: bool, reason: str) -> None:
        if (bound := ref()) is not None:
            bound(available, reason)

    return listener
