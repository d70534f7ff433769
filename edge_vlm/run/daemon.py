"""``edge-vlm run``: one Service at a time, its signals, and what systemd hears about it.

- READY=1 once the backend is loaded and the broker connection is up, with our subscriptions in
  place (``Service.serving``). Until then STATUS= says what it waits for, and EXTEND_TIMEOUT_USEC=
  keeps systemd's start-up timeout from running out while the broker is unreachable (a board that
  boots before its broker must wait, not fail and hit the restart limit), for as long as this loop
  is alive to say so.
- WATCHDOG=1 comes from the dispatcher loop (``Service.heartbeat``), so a stuck dispatcher gets the
  service restarted (``WatchdogSec=`` in the unit).
- SIGHUP: read the same file again with the same checks as at start (``load_checked``). An invalid
  file is refused, each problem logged on its own line, and the running service goes on. A valid one
  replaces the running service (stop it, start the new one), keeping the loaded backend when the
  backend settings did not change. RELOADING=1 first, READY=1 when the new one serves (subscribed). A SIGHUP
  during a reload is handled after it.
- SIGTERM / SIGINT: STOPPING=1 at once, then the service stops (job in flight finished or aborted,
  ``offline`` published) and the process exits 0.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType

from edge_vlm.config import load_checked, mqtt_password
from edge_vlm.config.models import AppConfig, LoggingConfig
from edge_vlm.core.errors import ConfigError, EdgeVlmError
from edge_vlm.run.systemd import Notifier, Watchdog
from edge_vlm.service import Service

logger = logging.getLogger(__name__)

WAIT_POLL_S = 0.1  # how often the connection is looked at before READY
SERVE_POLL_S = 1.0  # and after, for STATUS=
START_EXTENSION_S = 30.0  # while waiting for the broker, systemd's start-up timeout is extended by this
EXTEND_EVERY_S = 2.0  # this often
# READY=1 waits this long at most for the broker (at start; after a reload): then the daemon says it
# is ready anyway, and serves once the broker answers. systemctl start, boot (multi-user.target)
# and a second reload must not wait for a broker that is down, or for a password that is wrong.
START_BROKER_WAIT_S = 90.0
RELOAD_BROKER_WAIT_S = 10.0


class Wakeup:
    """Wakes the main loop from a signal handler or any thread: a byte down a pipe, which takes no
    lock. Never closed: a handler may still run as the process ends, and a closed descriptor's
    number may be another file's by then."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._poll = select.poll()  # not select(): a descriptor numbered past 1024 is fine
        self._poll.register(self._read, select.POLLIN)

    def set(self) -> None:
        with contextlib.suppress(BlockingIOError):  # the pipe is full: the loop wakes anyway
            os.write(self._write, b"\0")

    def wait(self, timeout: float) -> None:
        """Until set() or ``timeout``; what was set before is taken with it."""
        self._poll.poll(timeout * 1000)
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read, 4096):
                pass


class Daemon:
    def __init__(self, path: Path, config: AppConfig, environ: Mapping[str, str],
                 configure_logging: Callable[[LoggingConfig], None] | None = None) -> None:
        self.path = path
        self.config = config
        self.environ = environ
        self._configure_logging = configure_logging
        self.notifier = Notifier(environ)
        self.watchdog = Watchdog(self.notifier)
        self.service: Service | None = None
        # Set by the signal handlers, which run on the main thread between two of its bytecodes:
        # plain flags and a pipe, no lock (an Event's is not re-entrant: a handler that ran while
        # the main thread held it, in clear(), would wait for itself forever)
        self._wake = Wakeup()
        self._stop = False
        self._reload = False
        self._stopped_by: str | None = None  # the signal that asked for the stop
        self._ready = False
        self._ready_by = 0.0  # time.monotonic() by which READY=1 goes out, broker or not
        self._extended_at = -float("inf")

    # Signals (handlers run on the main thread, between two of its bytecodes: flags, a byte down a pipe
    # and one datagram (the Notifier's lock is re-entrant), nothing that takes a lock the main thread
    # may hold; the main loop logs them)

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_reload_signal)

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopped_by = signal.Signals(signum).name  # logged by the main loop
        self.request_stop()  # STOPPING=1 at once, even while the main thread loads a model

    def request_stop(self) -> None:
        """Stop serving: run() stops the service and returns."""
        if not self._stop:
            self.notifier.status("Stopping: finishing or aborting the job in flight")
        self._stop = True
        self._wake.set()

    def _on_reload_signal(self, signum: int, frame: FrameType | None) -> None:
        self._reload = True
        self._wake.set()

    # The main thread

    def run(self) -> int:
        """Start, serve until a stop signal, stop; the exit status."""
        if self.watchdog.enabled:
            logger.info("systemd watchdog: keep-alive every %.1f s", self.watchdog.every_s)
        try:
            with self.watchdog.covering("start"):  # the model may take minutes to load
                self.service = self._start(self._build(self.config, mqtt_password(self.config, self.environ)),
                                           START_BROKER_WAIT_S)
        except EdgeVlmError as exc:
            logger.error("Cannot start: %s", exc)  # noqa: TRY400 - the message is the whole story
            self.notifier.status(f"Cannot start: {exc}")
            return 1
        status = ""
        while not self._stop:
            if self._reload:
                self._reload = False
                logger.info("Received SIGHUP: reloading %s", self.path)
                if not self._reload_config():
                    return 1
                status = ""  # say it again, for the new service
                continue
            status = self._update(status)
            self._wake.wait(SERVE_POLL_S if self._ready else WAIT_POLL_S)
        if self._stopped_by is not None:
            logger.info("Received %s: stopping", self._stopped_by)
        self.notifier.stopping("Stopping: finishing or aborting the job in flight")
        with self.watchdog.covering("stop"):  # the dispatcher is the first to stop
            self.service.stop()
        self.notifier.close()
        return 0

    def _build(self, config: AppConfig, password: str | None, *, previous: Service | None = None,
               reuse_backend: bool = False) -> Service:
        """A new service for ``config``, not started; after ``previous`` (its counters go on), on
        its loaded backend with ``reuse_backend``."""
        stats = previous.stats if previous is not None else None
        if previous is not None and reuse_backend:
            service = Service(config, password, backend=previous.backend, environ=self.environ,
                              backend_loaded=True, stats=stats)
        else:
            service = Service(config, password, environ=self.environ, stats=stats)
        service.heartbeat = self.watchdog.beat
        return service

    def _start(self, service: Service, broker_wait_s: float) -> Service:
        self.notifier.status(f"Starting (backend {service.backend.name})")
        service.start()
        self._ready = False
        self._ready_by = time.monotonic() + broker_wait_s
        return service

    def _update(self, last_status: str) -> str:
        """READY=1 once connected and subscribed (the service heard its own sync message back), or
        once the broker wait is over without it; STATUS= when it changes; more start-up time while
        waiting."""
        assert self.service is not None
        connection = self.service.connection
        cameras = len(self.service.config.cameras)
        if connection.connected and self.service.serving.is_set():
            status = (f"Serving {cameras} camera(s) with the {self.service.backend.name} backend; "
                      f"MQTT broker {connection.broker}")
            if not self._ready:
                self._ready = True
                logger.info("Ready: %s", status)
                self.notifier.ready(status)
                return status
        elif self._ready:
            status = f"MQTT broker {connection.broker} unreachable: reconnecting{_because(connection.problem)}"
        elif time.monotonic() >= self._ready_by:
            self._ready = True
            status = (f"MQTT broker {connection.broker} unreachable: serving once it answers"
                      f"{_because(connection.problem)}")
            logger.warning("Ready without the MQTT broker %s, which did not answer in time; still trying",
                           connection.broker)
            self.notifier.ready(status)
            return status
        else:
            status = f"Waiting for MQTT broker {connection.broker}{_because(connection.problem)}"
            if time.monotonic() - self._extended_at >= EXTEND_EVERY_S:
                self._extended_at = time.monotonic()
                self.notifier.extend_timeout(START_EXTENSION_S)
        if status != last_status:
            self.notifier.status(status)
        return status

    def _reload_config(self) -> bool:
        """Replace the service with one for the file as it is now; False if none can run any more."""
        assert self.service is not None
        if self._ready:
            self.notifier.reloading(f"Reloading {self.path}")
        old = self.service
        try:
            config = load_checked(self.path, self.environ).config
            password = mqtt_password(config, self.environ)
        except ConfigError as exc:
            return self._refuse(exc.problems)
        except EdgeVlmError as exc:  # a credential gone since the check, say
            return self._refuse([str(exc)])
        keep_backend = config.backend == old.config.backend
        with self.watchdog.covering("reload"):
            old.stop(close_backend=not keep_backend)
            if keep_backend and not old.stopped:
                # The job in flight outlived the stop's grace (an abort the runtime ignored): the
                # backend may still be busy with it, so the new service gets one of its own.
                logger.warning("The previous job has not ended: loading the model anew")
                old.backend.close()
                keep_backend = False
            if self._configure_logging is not None:
                self._configure_logging(config.logging)
            try:
                self.service = self._start(self._build(config, password, previous=old, reuse_backend=keep_backend),
                                           RELOAD_BROKER_WAIT_S)
            except EdgeVlmError as exc:
                logger.error("The reloaded configuration cannot start: %s; going back to the previous one",  # noqa: TRY400
                             exc)
                if keep_backend:
                    old.backend.close()
                return self._restore(old)
        self.config = config
        logger.info("Reloaded %s: %d camera(s)%s", self.path, len(config.cameras),
                    ", backend kept loaded" if keep_backend else ", backend loaded anew")
        return True

    def _refuse(self, problems: list[str]) -> bool:
        logger.error("Reload refused: %s has %d problem(s); the running configuration stays:", self.path,
                     len(problems))
        for problem in problems:
            logger.error("%s: %s", self.path, problem)
        if self._ready:
            # READY=1 ends the reload systemd waits for; the service never stopped serving.
            self.notifier.ready(f"Reload refused ({len(problems)} problem(s) in {self.path}, see the journal); "
                                "running the previous configuration")
        return True

    def _restore(self, old: Service) -> bool:
        if self._configure_logging is not None:
            self._configure_logging(old.config.logging)
        try:
            self.service = self._start(self._build(old.config, mqtt_password(old.config, self.environ), previous=old),
                                       RELOAD_BROKER_WAIT_S)
        except EdgeVlmError as exc:
            logger.error("The previous configuration cannot start again either: %s", exc)  # noqa: TRY400
            return False
        return True


def _because(problem: str | None) -> str:
    """The connection's current problem, for STATUS= (``systemctl status`` shows it)."""
    return f" ({problem})" if problem else ""
