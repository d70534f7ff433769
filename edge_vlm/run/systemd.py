"""The daemon's side of systemd's service protocol (sd_notify(3)), without a dependency.

- ``Notifier``: state changes as a datagram of ``KEY=value`` lines to ``$NOTIFY_SOCKET`` (a path, or a
  socket in the abstract namespace when it starts with ``@``). When the variable is unset (not run by
  systemd, or a unit of another ``Type=``) every call does nothing.
- ``Watchdog``: ``WATCHDOG=1`` at most every half of ``$WATCHDOG_USEC``, each time its ``beat()`` is
  called: the daemon calls it from its dispatcher loop, so a loop that is stuck stops the keep-alives
  and systemd restarts the service (``WatchdogSec=`` in the unit).

Sending never raises: systemd gone away (or a test's socket closed) must not stop the daemon; the
first failure is logged, the next are not.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping

logger = logging.getLogger(__name__)

# A status longer than this is cut: systemctl shows one line, and a datagram has a size limit.
MAX_STATUS_CHARS = 200


def notify_address(value: str | None) -> str | bytes | None:
    """The socket address of ``$NOTIFY_SOCKET``: a path, or bytes for the abstract namespace; None: unusable."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # e.g. vsock:… (systemd ≥ 254, for virtual machines): not for a service on a board


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as systemd's MONOTONIC_USEC= wants it."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MAX_STATUS_CHARS else line[: MAX_STATUS_CHARS - 1] + "…"


class Notifier:
    """Tells systemd how the service is doing; a no-op when ``$NOTIFY_SOCKET`` is unset."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        raw = environ.get("NOTIFY_SOCKET")
        self._address = notify_address(raw)
        if raw and self._address is None:
            logger.warning("NOTIFY_SOCKET=%s is not a Unix socket address: not notifying systemd", raw)
        self._socket: socket.socket | None = None
        # Re-entrant: a signal handler (main thread) may notify while the main thread is sending.
        self._lock = threading.RLock()
        self._failed = False
        self.watchdog_s = watchdog_interval(environ)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` fields in one datagram; False if not sent (disabled, or the socket failed)."""
        if self._address is None:
            return False
        data = "\n".join(fields).encode()
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.sendto(data, self._address)
            except OSError as exc:
                if not self._failed:
                    logger.warning("Cannot notify systemd through NOTIFY_SOCKET: %s", exc.strerror or exc)
                    self._failed = True
                return False
        return True

    def ready(self, status: str) -> None:
        """Start-up (or a reload) is complete: the service does its work."""
        self.send("READY=1", f"STATUS={_one_line(status)}")

    def reloading(self, status: str) -> None:
        """A reload starts; READY=1 ends it (systemd ≥ 253 ``Type=notify-reload`` checks MONOTONIC_USEC=;
        older versions ignore it and take RELOADING=1 alone)."""
        self.send("RELOADING=1", f"STATUS={_one_line(status)}", f"MONOTONIC_USEC={monotonic_usec()}")

    def stopping(self, status: str) -> None:
        self.send("STOPPING=1", f"STATUS={_one_line(status)}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={_one_line(status)}")

    def extend_timeout(self, seconds: float) -> None:
        """Ask for ``seconds`` more before systemd gives up on the start-up (or stop) in progress."""
        self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """systemd's watchdog timeout in seconds, or None when there is none for this process.

    ``$WATCHDOG_PID``, when set, names the process the watchdog is for: another one's (a parent that
    passed its environment on) means not ours.
    """
    usec = environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = environ.get("WATCHDOG_PID")
    try:
        if pid and int(pid) != os.getpid():
            return None
        value = int(usec)
    except ValueError:
        logger.warning("WATCHDOG_USEC=%r / WATCHDOG_PID=%r are not numbers: no watchdog keep-alives", usec, pid)
        return None
    return value / 1_000_000 if value > 0 else None


PHASE_EXTENSION_S = 30.0  # more time asked of systemd for a start, reload or stop phase...
PHASE_EXTEND_EVERY_S = 5.0  # ...this often, while the phase runs


class Watchdog:
    """``WATCHDOG=1`` keep-alives, sent by ``beat()`` at most every half of the watchdog timeout."""

    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier
        self.every_s = notifier.watchdog_s / 2 if notifier.watchdog_s and notifier.enabled else None
        self._last = -float("inf")
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.every_s is not None

    def beat(self) -> None:
        """Called from the loop whose liveness the watchdog proves, as often as it likes."""
        if self.every_s is None:
            return
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.every_s:
                return
            self._last = now
        self._notifier.send("WATCHDOG=1")

    @contextlib.contextmanager
    def covering(self, what: str) -> Iterator[None]:
        """While ``what`` runs without the dispatcher loop (loading the model at start, a reload, a
        stop), a thread of its own sends the keep-alives and asks systemd for more time for the
        phase (EXTEND_TIMEOUT_USEC): how long each may take is bounded by the daemon itself
        (backend.load_timeout_s, the stop's grace), not by the unit's TimeoutStartSec/StopSec."""
        if not self._notifier.enabled:
            yield
            return
        done = threading.Event()
        pause = min(self.every_s / 4, PHASE_EXTEND_EVERY_S) if self.every_s else PHASE_EXTEND_EVERY_S

        def keep_alive() -> None:
            while True:
                self.beat()
                self._notifier.extend_timeout(PHASE_EXTENSION_S)
                if done.wait(pause):
                    return

        thread = threading.Thread(target=keep_alive, name=f"edge_vlm-watchdog-{what}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
