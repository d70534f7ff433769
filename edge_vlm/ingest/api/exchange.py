"""One HTTP request's job, as its event loop sees it: asked as a trigger, its answer handed back from
the worker's thread (and, for a request that streams a text answer, the text as the model writes
it, piece by piece), cancelled when its client goes away before the end.

The response waits for the first thing the job says: an error or a whole answer is answered with
its own status; the first piece of text starts a stream of 200, which then carries the rest (an
error after that is a last chunk that says so, in the API's shape), and says when it is over,
however it ended (``StreamedAnswer``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from edge_vlm.core.contracts import Origin, Reply, new_request_id
from edge_vlm.ingest.api.asks import Ask
from edge_vlm.ingest.trigger import IMAGE_REQUESTS, Trigger

logger = logging.getLogger(__name__)

ANSWER_TIMEOUT_S = 600.0  # a job that never answers (it always does: this bounds a bug, not a board)

Said = str | dict[str, Any]  # a piece of the answer's text, or the job's end: its result's or error's payload


class Answering:
    """What a request's job says, in order, handed from any thread to the request's event loop."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.said: asyncio.Queue[Said] = asyncio.Queue()

    def tell(self, item: Said) -> None:  # any thread
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server stopped, nobody waits
            self._loop.call_soon_threadsafe(self.said.put_nowait, item)


@dataclass
class Asked:
    """A request's job as its response sees it: the first thing it said, and whether its end was sent."""

    request_id: str
    answering: Answering
    first: Said
    ended: bool = False


class Exchange:
    """Requests made jobs: ``submit`` (admission's) asks, ``cancel(camera, request id, why)`` (the
    runner's) takes back the job of a client that went away."""

    def __init__(self, submit: Callable[[Trigger], None], cancel: Callable[[str, str, str], None]) -> None:
        self._submit = submit
        self._cancel = cancel

    async def ask(self, ask: Ask, request: Request, *, streams: bool) -> Asked | None:
        """The job, with the first thing it said (with ``streams``, a piece of text may come before
        the end); None when the client went away first (the job is cancelled: taken from the
        queue, or aborted on the NPU)."""
        answering = Answering()
        request_id = new_request_id()
        reply = Reply("", answer=answering.tell, told=answering.tell if streams else None)
        trigger = Trigger(IMAGE_REQUESTS, Origin.REQUEST, ask.prompt, request_id, f"http POST {request.url.path}",
                          time.monotonic(), time.time(), reply=reply, fields=ask.fields, json_object=ask.json_object,
                          no_image=not ask.images,
                          images=ask.images, max_new_tokens=ask.max_new_tokens, sampling=ask.sampling)
        await asyncio.to_thread(self._submit, trigger)  # off the loop: a question without an image is queued there
        first: asyncio.Future[Said] = asyncio.ensure_future(answering.said.get())
        gone: asyncio.Future[None] = asyncio.ensure_future(_disconnected(request))
        either: set[asyncio.Future[Any]] = {first, gone}
        try:
            await asyncio.wait(either, timeout=ANSWER_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the server is stopping: the job is nobody's any more
            self.cancel(request_id, "the HTTP API stopped")
            raise
        finally:
            gone.cancel()
        if first.done():
            return Asked(request_id, answering, first.result())
        first.cancel()
        why = "the HTTP client went away" if gone.done() and not gone.cancelled() else \
            f"no answer within {ANSWER_TIMEOUT_S:g} s"
        # off the loop: the runner's lock may be held while a job goes down the worker's pipe
        await asyncio.to_thread(self._cancel, IMAGE_REQUESTS, request_id, why)
        if gone.done():
            logger.info("HTTP %s: %s before the answer: request %s cancelled", request.url.path, why, request_id)
            return None
        return Asked(request_id, answering, {"error": "timed_out", "message": why})

    def cancel(self, request_id: str, why: str) -> None:
        """Take back the request's job, from the loop without waiting (the runner's lock may be held)."""
        asyncio.get_running_loop().run_in_executor(None, self._cancel, IMAGE_REQUESTS, request_id, why)

    async def rest(self, asked: Asked) -> AsyncIterator[Said]:
        """What the job says from its first piece of text to its end (the payload, last)."""
        said: Said = asked.first
        while True:
            if isinstance(said, dict):
                asked.ended = True  # before it is handed on: a client gone while it is sent left a job done
                yield said
                return
            yield said
            try:
                said = await asyncio.wait_for(asked.answering.said.get(), ANSWER_TIMEOUT_S)
            except asyncio.TimeoutError:  # not yet the built-in one on Python 3.10
                why = f"no more of the answer within {ANSWER_TIMEOUT_S:g} s"
                self.cancel(asked.request_id, why)
                said = {"error": "timed_out", "message": why}

    def abandon(self, asked: Asked) -> None:
        """The response is over: a job whose end was not sent (its client went away, or the
        response never began) is cancelled."""
        if not asked.ended:
            asked.ended = True
            logger.info("HTTP request %s: the client went away during the answer: cancelled", asked.request_id)
            self.cancel(asked.request_id, "the HTTP client went away")


class StreamedAnswer(StreamingResponse):
    """A stream that says when it is over, however it ended: sent whole, its client gone midway, or
    never begun (a server whose send fails at once gives the body no chance to run its own
    ``finally``); its body is closed first."""

    def __init__(self, body: AsyncGenerator[bytes, None], media_type: str, *, ended: Callable[[], None]) -> None:
        super().__init__(body, media_type=media_type)
        self._body, self._ended = body, ended

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            try:
                await self._body.aclose()
            finally:
                self._ended()


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects (its body read, what comes next is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
