"""The daemon's parts, built and started in the order a frame goes through them, and stopped in it.

Threads: paho's network thread (its callbacks only put events into the inbox); the dispatcher
(edge_vlm.publish.session: each event to the router); the capture pool (edge_vlm.frames.capture);
the worker (edge_vlm.inference.runner: one job at a time on the backend); one reader per persistent
RTSP camera and its motion detector; the interval timer; the alerts' timer. Nothing here decides
anything about a message or a frame: that is the stages' (edge_vlm/__init__.py).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from edge_vlm.camera_state import CameraStates
from edge_vlm.config.models import AppConfig
from edge_vlm.config.secrets import read_secret
from edge_vlm.config.vlm import VlmBackendConfig
from edge_vlm.core.contracts import Failure, Origin
from edge_vlm.core.stats import Stats
from edge_vlm.core.topics import Topics
from edge_vlm.frames.grab import FrameGrabber
from edge_vlm.frames.sources import create_source, stop_all
from edge_vlm.frames.sources.retained import RetainedImages
from edge_vlm.gate import Gate
from edge_vlm.inference.backends import Backend, create_backend
from edge_vlm.inference.job_maker import JobMaker
from edge_vlm.inference.runner import Runner
from edge_vlm.ingest.controls import Controls
from edge_vlm.ingest.frigate import FrigateEvents
from edge_vlm.ingest.frigate_reviews import FrigateReviews
from edge_vlm.ingest.motion import follow_states, watch_streams
from edge_vlm.ingest.requests import RequestTopics
from edge_vlm.ingest.router import Router
from edge_vlm.ingest.routes import Handlers, add_routes
from edge_vlm.ingest.timers import IntervalTimer
from edge_vlm.ingest.trigger_topics import TriggerTopics
from edge_vlm.mqtt.connection import MqttConnection
from edge_vlm.mqtt.inbox import Inbox
from edge_vlm.publish.alerts import Alerts
from edge_vlm.publish.diagnostics import Diagnostics
from edge_vlm.publish.frigate_writer import FrigateWriter
from edge_vlm.publish.outcomes import Outcomes
from edge_vlm.publish.publisher import Publisher
from edge_vlm.publish.session import Session
from edge_vlm.schedule.admission import Admission
from edge_vlm.schedule.scheduler import Scheduler

if TYPE_CHECKING:
    from edge_vlm.ingest.api.server import ApiServer
    from edge_vlm.ingest.trigger import Trigger

logger = logging.getLogger(__name__)

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
        self.topics = topics = Topics.from_config(config)
        self._backend_loaded = backend_loaded
        self.backend = backend or create_backend(config.backend, config.logging.level)
        self.stats = stats or Stats(self.backend.name)
        self.stats.backend = self.backend.name
        limits = config.limits

        # The transport and the ordered outbox.
        self.router = Router()  # filled last, once every handler exists
        self.inbox = Inbox(limits.inbound_queue, limits.inbound_queue_mb * 1_000_000,
                           precious=self.router.asked, latest_wins=self.router.latest_wins)
        self.connection = MqttConnection(config, password, self.inbox, status_topic=topics.status)
        self.publisher = Publisher(self.connection, config.mqtt.max_queued_messages)
        counters_changed = threading.Event()

        # The result end first, so that each stage can be handed where its output goes.
        self.camera_states = states = CameraStates(config)
        self.alerts = Alerts(config, topics, self.publisher)
        environ = os.environ if environ is None else environ
        self.frigate_writer = None if not config.frigate.write_descriptions else FrigateWriter(
            config.frigate, read_secret(config.frigate.password_env, config.frigate.password_credential, environ),
            report=lambda camera, event_id, code, message: self.outcomes.publish_failure(
                Failure(camera, code, message, event_id, origin=Origin.FRIGATE)))
        self.outcomes = Outcomes(topics, self.publisher, self.stats, self.alerts,
                                 cameras=[c.id for c in config.cameras], counters_changed=counters_changed.set,
                                 frigate_described=None if self.frigate_writer is None else self.frigate_writer.offer)
        self.scheduler = Scheduler(self.stats, self.outcomes.accepted)
        self.runner = Runner(self.scheduler, self.backend, states, self.outcomes)

        # Frames, the gate and admission.
        self.sources = {c.id: create_source(c, config, environ,
                                            min_long_side=self.backend.min_long_side,
                                            on_state=functools.partial(self.outcomes.stream, c.id))
                        for c in config.cameras}
        self.retained_images = RetainedImages(self.connection.subscribe, self.connection.unsubscribe)
        self.grabber = FrameGrabber(config, self.sources, retained=self.retained_images,
                                    min_long_side=self.backend.min_long_side)
        self.admission = Admission(config, topics, Gate(config, states), self.grabber, scheduler=self.scheduler,
                                   stats=self.stats, make_job=JobMaker(config, states, self.backend).make,
                                   not_admitted=self.outcomes)

        # What asks for descriptions.
        self.controls = Controls(config, topics, states, self.publisher.send)
        self.trigger_topics = TriggerTopics(topics, RequestTopics.from_config(config, topics), limits.max_payload_bytes,
                                            submit=self.admission.submit, refuse=self.admission.refuse)
        self.frigate = FrigateEvents(config, self.admission.submit, seen=self.grabber.frigate.note_event)
        self.grabber.frigate.on_unpictured(self.frigate.unpictured)
        self.frigate_reviews = FrigateReviews(config, self.admission.submit, self.frigate.recent)
        self.timer = IntervalTimer(config, self.admission.submit)
        self.detectors = watch_streams(config, self.sources, self.admission.submit)
        follow_states(self.detectors, states)

        self.diagnostics = Diagnostics(topics, self.publisher, self.stats, interval_s=config.diagnostics.interval_s,
                                       due=counters_changed, connection=self.connection, inbox=self.inbox,
                                       scheduler=self.scheduler, detectors=self.detectors, backend=self.backend)
        self.session = Session(config, topics, self.connection, inbox=self.inbox, router=self.router,
                               publisher=self.publisher, diagnostics=self.diagnostics, synced=self.controls.synced)
        add_routes(self.router, config, topics, Handlers(
            retained_image=self.retained_images.offer, sync=self.session.sync, ha_status=self.session.ha_status,
            stale_device=self.session.stale_device, controls=self.controls, frigate_event=self.frigate.handle,
            frigate_review=self.frigate_reviews.handle, frigate_snapshot=self.grabber.frigate.handle,
            request=self.trigger_topics.request, trigger=self.trigger_topics.trigger,
            own_snapshot=self.admission.own_snapshot, snapshot=self.admission.snapshot))
        self.connection.subscribe_on_connect(*self.router.subscriptions(config.mqtt.shared_group))
        self._stopping = threading.Event()
        self._model_available = threading.Event()
        self.api = None if not config.http.enabled else _api_server(config, environ, self.admission.submit,
                                                                    self.runner.cancel, self.ready)

    # Lifecycle

    @property
    def heartbeat(self) -> Callable[[], None]:
        return self.session.heartbeat

    @heartbeat.setter
    def heartbeat(self, beat: Callable[[], None]) -> None:
        """Called on each turn of the dispatcher loop: systemd's watchdog keep-alive (edge_vlm.run.systemd)."""
        self.session.heartbeat = beat

    @property
    def serving(self) -> threading.Event:
        return self.session.serving

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
        if self.api is not None:  # first after the model: a port taken fails the start before anything runs
            self.api.start()
        self.diagnostics.model_availability(True, "loaded")
        self._model_available.set()
        # Weakly: a backend kept across a reload must not keep the replaced service alive.
        self.backend.on_availability(_weak_listener(self.diagnostics.model_availability))
        self.backend.on_availability(_weak_listener(self._model_changed))
        self.alerts.start()
        for camera, detector in self.detectors.items():
            detector.start(camera)
        for source in self.sources.values():
            source.start()
        self.timer.start()
        if self.frigate_writer is not None:
            self.frigate_writer.start()
        self.connection.start()
        self.session.start()
        self.runner.start()

    def ready(self) -> dict[str, bool]:
        """What must hold to answer the HTTP API's requests (its /readyz)."""
        return {"model_loaded": self._model_available.is_set(), "broker_connected": self.connection.connected}

    def _model_changed(self, available: bool, reason: str) -> None:
        if available:
            self._model_available.set()
        else:
            self._model_available.clear()

    def stop(self, grace: float = STOP_GRACE_S, *, close_backend: bool = True) -> None:
        """Take no more work, finish or abort the job in flight, publish ``offline``, disconnect;
        ``close_backend=False`` leaves the backend loaded for the service that replaces this one."""
        if self._stopping.is_set():
            return
        logger.info("Stopping")
        self._stopping.set()
        try:
            # In the order work flows: no new messages, no new frames, no new jobs, then the job in flight.
            self.session.stop(grace)
            self.timer.stop()
            self.frigate.stop()
            stop_all(self.sources)
            for detector in self.detectors.values():
                detector.stop()
            self.grabber.frigate.close()
            self.admission.close()
            self.runner.cancel_waiting()
            self.runner.stop(grace)
            if self.api is not None:  # after the jobs: each HTTP request waiting has had its answer (cancelled)
                self.api.stop()
            if not self.session.alive:  # else it still routes: two threads must not
                self.session.drain()  # until the connection goes, right after this
            self.alerts.stop()
            if self.frigate_writer is not None:
                self.frigate_writer.stop()
            self.diagnostics.publish()
        finally:
            self.connection.stop()
            if close_backend:
                self.backend.close()
        logger.info("Stopped")

    @property
    def stopped(self) -> bool:
        """Its threads have ended (after stop()): nothing of it uses the backend any more."""
        return self._stopping.is_set() and not (self.session.alive or self.runner.alive)


def _api_server(config: AppConfig, environ: Mapping[str, str], submit: Callable[[Trigger], None],
                cancel: Callable[[str, str, str], None], ready: Callable[[], dict[str, bool]]) -> ApiServer:
    """The HTTP API (``http:``), not started; SecretUnavailable if its key's credential cannot be read."""
    from edge_vlm.ingest.api.app import Api  # noqa: PLC0415 - Starlette and uvicorn only when it is on
    from edge_vlm.ingest.api.server import ApiServer  # noqa: PLC0415

    key = read_secret(config.http.api_key_env, config.http.api_key_credential, environ)
    vlm = config.backend if isinstance(config.backend, VlmBackendConfig) else None
    return ApiServer(config.http, Api(config.http, key, submit=submit, cancel=cancel, ready=ready, vlm=vlm).app)


def _weak_listener(method: Callable[[bool, str], None]) -> Callable[[bool, str], None]:
    """``method``, called only while its object lives."""
    ref = weakref.WeakMethod(method)

    def listener(available: bool, reason: str) -> None:
        if (bound := ref()) is not None:
            bound(available, reason)

    return listener
