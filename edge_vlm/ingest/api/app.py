"""The HTTP API's routes: Ollama's (``/api/...``) and OpenAI's (``/v1/...``), each request a job on
the NPU queue like an MQTT request, its answer (or error) in the client's API's shape.

A request is checked before anything is read of it (the key, then the size its Content-Length
announces) and its body read only up to ``http.max_request_mb``; then it becomes a job
(edge_vlm.ingest.api.exchange), whose answer, or for a text answer streamed its text as the model
writes it, comes back from the worker's thread to the request's event loop. The key is compared in
constant time and never logged.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from functools import partial
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from edge_vlm.config.http_api import HttpApiConfig, key_problem
from edge_vlm.config.vlm import VlmBackendConfig, prompt_room
from edge_vlm.core.errors import ConfigError, ErrorCode
from edge_vlm.ingest.api import answers
from edge_vlm.ingest.api.asks import (
    MAX_PROMPT,
    Ask,
    ollama_chat,
    ollama_generate,
    openai_chat,
    parse_json,
    utf8_len,
)
from edge_vlm.ingest.api.errors import ApiError
from edge_vlm.ingest.api.exchange import Asked, Exchange, StreamedAnswer
from edge_vlm.ingest.trigger import Trigger

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 5  # what a client told 429 (too many requests) or 503 is asked to wait
BODIES_AT_ONCE = 4  # request bodies read at the same time (each up to http.max_request_mb)
SMALL_BODY = 65_536  # the most a request without an image may send (/api/show)
OLLAMA_VERSION = "0.6.0"  # the Ollama API this one answers as (clients check /api/version)

# The HTTP status of each error a job or its input can end in.
STATUS = {ErrorCode.PAYLOAD_TOO_LARGE: 413, ErrorCode.IMAGE_TOO_LARGE: 413, ErrorCode.BUSY: 429,
          ErrorCode.MODEL_UNAVAILABLE: 503, ErrorCode.CANCELLED: 503, ErrorCode.TIMED_OUT: 504,
          ErrorCode.WORKER_CRASHED: 500, ErrorCode.BACKEND_FAILED: 500, ErrorCode.INTERNAL_ERROR: 500,
          ErrorCode.BAD_ANSWER: 502}


class Api:
    def __init__(self, config: HttpApiConfig, key: str | None, *, submit: Callable[[Trigger], None],
                 cancel: Callable[[str, str, str], None], ready: Callable[[], Mapping[str, bool]],
                 vlm: VlmBackendConfig | None = None) -> None:
        """``submit``: admission's, for the triggers; ``cancel(camera, request id, why)``: the
        runner's, for a request whose client went away; ``ready``: what must hold to answer (the
        model loaded, the broker connected), each by name; ``vlm``: the NPU backend's settings, whose
        context bounds a question (config.vlm.prompt_room) and is listed as vLLM lists it (Frigate
        sizes its requests by it)."""
        self._config = config
        self._key = key
        self._exchange = Exchange(submit, cancel)
        self._ready = ready
        self._limit = int(config.max_request_mb * 1_000_000)
        room = prompt_room(vlm) if vlm is not None else (MAX_PROMPT, "")
        self._max_prompt, self._prompt_bound = room if room[0] < MAX_PROMPT else (MAX_PROMPT, "")
        self._context_tokens = vlm.llm.max_context_len if vlm is not None else None
        self._asking: dict[str, int] = {}  # client address -> its requests waiting or running (the loop's thread)
        self._reading = asyncio.Semaphore(BODIES_AT_ONCE)
        if not config.allow_no_key and (problem := key_problem(key)) is not None:
            raise ConfigError([f"http: {problem}"])
        app = Starlette(routes=[
            Route("/healthz", self._healthz), Route("/readyz", self._readyz),
            Route("/api/version", self._version), Route("/api/tags", self._tags),
            Route("/api/show", self._show, methods=["POST"]),
            Route("/api/chat", self._ollama_chat, methods=["POST"]),
            Route("/api/generate", self._ollama_generate, methods=["POST"]),
            Route("/v1/models", self._models), Route("/v1/chat/completions", self._openai_chat, methods=["POST"]),
        ], exception_handlers={ApiError: self._refused, HTTPException: self._starlette_error,  # type: ignore[dict-item]
                               ClientDisconnect: self._client_gone})
        app.router.redirect_slashes = False  # a redirect would drop the /k/<key> the request came with
        self.app: ASGIApp = KeyInPath(app)

    # Health: no key needed, nothing told but whether it serves

    async def _healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def _readyz(self, request: Request) -> Response:
        checks = dict(self._ready())
        return JSONResponse({"ready": all(checks.values()), **checks}, status_code=200 if all(checks.values()) else 503)

    # Ollama

    async def _version(self, request: Request) -> Response:
        self._authorize(request)
        return JSONResponse({"version": OLLAMA_VERSION})

    async def _tags(self, request: Request) -> Response:
        self._authorize(request)
        return JSONResponse({"models": [answers.ollama_model(self._config.model)]})

    async def _show(self, request: Request) -> Response:
        self._authorize(request)
        data = parse_json(await self._body(request, SMALL_BODY))
        self._known(data.get("model") or data.get("name"))
        return JSONResponse(answers.ollama_show())

    async def _ollama_chat(self, request: Request) -> Response:
        return await self._answer(request, partial(ollama_chat, max_prompt=self._max_prompt), answers.OLLAMA_CHAT)

    async def _ollama_generate(self, request: Request) -> Response:
        return await self._answer(request, ollama_generate, answers.OLLAMA_GENERATE)

    # OpenAI

    async def _models(self, request: Request) -> Response:
        self._authorize(request)
        listed = answers.openai_model(self._config.model, self._context_tokens)
        return JSONResponse({"object": "list", "data": [listed]})

    async def _openai_chat(self, request: Request) -> Response:
        return await self._answer(request, partial(openai_chat, fetches=self._config.fetches,
                                                   max_prompt=self._max_prompt), answers.OPENAI_CHAT)

    # Each request

    async def _answer(self, request: Request, read: Callable[[dict[str, Any]], Ask], shape: answers.Shape) -> Response:
        """A question: its client's turn taken before its body is read (so one client cannot have
        more than its share of bodies in memory) and given back when it is answered (a stream: at
        its end), asked if the model is there, answered in shape."""
        self._authorize(request)
        client = request.client.host if request.client is not None else ""
        if self._asking.get(client, 0) >= self._config.max_waiting_per_client:
            raise ApiError(429, f"{self._config.max_waiting_per_client} requests of yours already wait or run "
                           "(http.max_waiting_per_client): ask again when one is answered", "rate_limit_exceeded")
        self._asking[client] = self._asking.get(client, 0) + 1
        streaming = False
        try:
            async with self._reading:
                ask = read(parse_json(await self._body(request)))
            self._known(ask.model)
            if (length := utf8_len(ask.prompt)) > self._max_prompt:
                bound = f"{self._prompt_bound} takes about" if self._prompt_bound else "a question is"
                raise ApiError(400, f"the question is {length} bytes long in UTF-8 (the system prompt and the last "
                               f"turn included): {bound} {self._max_prompt} at most")
            if not self._ready().get("model_loaded", True):
                raise ApiError(503, "the model is not loaded (the inference worker is starting or restarting)",
                               "server_error")
            # a JSON answer is checked whole before it is told; a text one streams as the model writes it
            asked = await self._exchange.ask(ask, request, streams=ask.stream and ask.fields is None
                                             and not ask.json_object)
            if asked is None:  # the client went away: nobody to answer
                return Response(status_code=499)
            first = asked.first
            if isinstance(first, str):
                streaming = True
                return StreamedAnswer(self._stream(shape, asked), shape.media_type,
                                      ended=partial(self._stream_ended, asked, client))
        finally:
            if not streaming:
                self._release(client)
        if "error" in first:
            code = ErrorCode(first["error"])
            status = STATUS.get(code, 400)
            raise ApiError(status, str(first["message"]), "server_error" if status >= 500 else
                           "rate_limit_exceeded" if status == 429 else "invalid_request_error")
        shaped = shape.answer(self._config.model, first, ask.stream)
        if not ask.stream:
            return JSONResponse(shaped.whole)
        return StreamingResponse(_chunks(shaped.chunks), media_type=shaped.media_type)

    async def _stream(self, shape: answers.Shape, asked: Asked) -> AsyncGenerator[bytes, None]:
        """A text answer as the model writes it (leading spaces left out, as the whole answer's),
        then the chunks that end it, or the error it ended in."""
        model, leading = self._config.model, True
        async for said in self._exchange.rest(asked):
            if isinstance(said, str):
                if text := said.lstrip() if leading else said:
                    yield shape.piece(model, asked.request_id, text, leading)
                    leading = False
            elif "error" in said:
                yield shape.error(str(said["message"]), "server_error")
            else:
                for chunk in shape.answer(model, said, True).chunks[0 if leading else 1:]:
                    yield chunk

    def _stream_ended(self, asked: Asked, client: str) -> None:
        self._exchange.abandon(asked)
        self._release(client)

    def _release(self, client: str) -> None:
        self._asking[client] -= 1
        if not self._asking[client]:
            del self._asking[client]

    def _authorize(self, request: Request) -> None:
        if self._key is None:  # allow_no_key (checked when built)
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = [token.strip() if scheme.lower() == "bearer" else "", request.scope.get(KeyInPath.SCOPE_KEY, "")]
        if not any(hmac.compare_digest(one.encode(), self._key.encode()) for one in given):
            raise ApiError(401, "a valid API key is needed: Authorization: Bearer <key>, or the URL "
                           f"http://<board>:{self._config.port}/k/<key> (http.api_key_env or http.api_key_credential "
                           "on the board)", "invalid_api_key")

    def _known(self, model: Any) -> None:
        if model not in self._config.model_names:
            shown = repr(model) if len(repr(model)) <= 80 else repr(model)[:77] + "..."
            raise ApiError(404, f"model {shown} not found: this server has {self._config.model!r}", "model_not_found")

    async def _body(self, request: Request, limit: int | None = None) -> bytes:
        """The body, refused with 413 past the limit (``http.max_request_mb`` unless given): by its
        Content-Length before reading, else as it comes."""
        limit = self._limit if limit is None else limit
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise ApiError(413, f"the request of {int(length)} bytes is over the limit of {limit} "
                           "(http.max_request_mb)")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"the request is over the limit of {limit} bytes (http.max_request_mb)")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _refused(self, request: Request, error: ApiError) -> Response:
        # a wrong key is no news worth a line each (anyone on the network can send one); a path that
        # came after /k/ is not shown (what a client took for the key's end may be more of it)
        path = "/k/.../…" if KeyInPath.SCOPE_KEY in request.scope else request.url.path
        logger.log(logging.DEBUG if error.status == 401 else logging.INFO, "HTTP %s %s refused: %s %s",
                   request.method, path, error.status, error)
        if request.url.path.startswith("/v1/"):
            body: dict[str, Any] = {"error": {"message": str(error), "type": error.kind, "param": None,
                                              "code": error.kind if error.status in (401, 404, 429) else None}}
        else:
            body = {"error": str(error)}
        headers = {"Retry-After": str(RETRY_AFTER_S)} if error.status in (429, 503) else {}
        return JSONResponse(body, status_code=error.status, headers=headers)

    async def _starlette_error(self, request: Request, error: Exception) -> Response:
        """A path or method that is none of ours, in the API's shape."""
        assert isinstance(error, HTTPException)
        return await self._refused(request, ApiError(error.status_code, str(error.detail), "not_found"))

    async def _client_gone(self, request: Request, error: Exception) -> Response:
        """The client went away while sending its request: nobody to answer."""
        return Response(status_code=499)


class KeyInPath:
    """``/k/<key>/api/chat`` is ``/api/chat`` with the key: for clients that take a URL and send no
    header of ours (Home Assistant's Ollama integration). The key is taken out of the path before
    any route, log line or error message sees it."""

    PREFIX = "/k/"
    SCOPE_KEY = "edge_vlm.key"

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.PREFIX):
            key, _, rest = scope["path"][len(self.PREFIX):].partition("/")
            raw = scope.get("raw_path") or scope["path"].encode()
            raw_rest = raw[len(self.PREFIX):].partition(b"/")[2]
            scope = {**scope, "path": "/" + rest, "raw_path": b"/" + raw_rest, self.SCOPE_KEY: key}
        await self.app(scope, receive, send)


async def _chunks(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
