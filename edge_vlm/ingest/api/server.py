"""The HTTP API's server: uvicorn with its own event loop on a thread of its own.

The socket is bound and listening in ``start()``, on the caller's thread, so that a port already
taken (Ollama itself on 11434, say) stops the start with an error that says so, and a client that
connects right after the start waits for uvicorn's loop rather than being refused. ``stop()`` comes after the
daemon's jobs are done or cancelled (each waiting request has had its answer: 503), takes no new
connections and gives the answers in flight a moment to go out.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading

import uvicorn
from starlette.types import ASGIApp

from edge_vlm.config.http_api import HttpApiConfig
from edge_vlm.core.errors import ConfigError

logger = logging.getLogger(__name__)

BACKLOG = 64
MAX_CONNECTIONS = 64  # open at once; more are answered 503 by uvicorn
STOP_WAIT_S = 3  # stop() waits this long for the requests in flight, then closes their connections


class ApiServer:
    def __init__(self, config: HttpApiConfig, app: ASGIApp) -> None:
        self._config = config
        # log_config None: the daemon's logging stays as configured; no access log (nothing of a
        # request is logged but its refusal)
        # proxy_headers off: a client cannot pass for another (X-Forwarded-For) to get past its limit
        self._server = uvicorn.Server(uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off", ws="none", proxy_headers=False,
            limit_concurrency=MAX_CONNECTIONS, timeout_graceful_shutdown=STOP_WAIT_S, server_header=False))
        self._thread: threading.Thread | None = None
        self.port = config.port

    def start(self) -> None:
        """Listen; ConfigError when the address cannot be had."""
        host = self._config.bind
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, self._config.port))
            sock.listen(BACKLOG)  # connections wait from now on, while uvicorn's loop starts
        except OSError as exc:
            sock.close()
            taken = exc.errno == errno.EADDRINUSE
            why = "the port is taken (another server, Ollama itself?)" if taken else exc.strerror
            raise ConfigError([f"http: cannot listen on {host}:{self._config.port}: {why}"]) from None
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="edge_vlm-http", daemon=True)
        self._thread.start()
        logger.info("HTTP API on http://%s:%d (Ollama /api, OpenAI /v1), model %s, %s", host, self.port,
                    self._config.model, "no key (loopback only)" if self._config.allow_no_key else "API key required")

    @property
    def started(self) -> bool:
        return self._server.started

    def stop(self) -> None:
        if self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(STOP_WAIT_S + 2)
        if self._thread.is_alive():
            logger.warning("HTTP API: still answering %g s after the stop; not waiting for it", STOP_WAIT_S + 2)
