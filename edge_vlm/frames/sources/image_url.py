"""An image a request names by its URL (the HTTP API's OpenAI ``image_url``): fetched once, only from
a host the user allowed (``http.image_url_hosts``: checked by the API and here, and a redirect to
any other host is not followed), within a deadline (all of a request's fetches share TIMEOUT_S)
and the payload limit, with no proxy from the environment and no credentials. Every failure is an
``ImageError`` naming the URL, its query left out.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import IO

from edge_vlm.core.errors import ImageError
from edge_vlm.core.redact import redact_url
from edge_vlm.frames.sources.http_deadline import Deadline, HttpHandler, HttpsHandler, read_at_most

TIMEOUT_S = 10.0  # for all of a request's fetches, redirects included
Allowed = Callable[[str], bool]  # whether a URL may be fetched (HttpApiConfig.fetches)


class _AllowedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect to an allowed host only: an allowed server must not lead the board elsewhere."""

    def __init__(self, allowed: Allowed, shown: str) -> None:
        super().__init__()
        self._allowed, self._shown = allowed, shown

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,  # noqa: PLR0917 - urllib's
                         headers: http.client.HTTPMessage, newurl: str) -> urllib.request.Request | None:
        if not self._allowed(newurl):
            raise ImageError(f"image URL {self._shown} redirects to {redact_url(newurl)[:120]}, whose host is not "
                             "in http.image_url_hosts: not followed")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_image(url: str, allowed: Allowed, *, max_bytes: int, seconds: float = TIMEOUT_S) -> bytes:
    """The body of ``url`` (at most ``max_bytes``, within ``seconds``); ImageError saying why there is none."""
    shown = redact_url(url.partition("?")[0])[:120]  # a query may hold a signature (Home Assistant's authSig)
    if not allowed(url):  # the API refused it already: this holds whoever asks
        raise ImageError(f"image URL {shown}: its host is not in http.image_url_hosts: not fetched")
    if seconds <= 0:
        raise ImageError(f"image URL {shown} not fetched: the request's images took {TIMEOUT_S:g} s already")
    deadline = Deadline(seconds)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _AllowedRedirects(allowed, shown),
                                         HttpHandler(deadline), HttpsHandler(deadline, None))
    try:
        with deadline, opener.open(urllib.request.Request(url, headers={"Accept": "image/*"}),  # noqa: S310 - http(s), allowed host
                                   timeout=seconds) as response:
            body = read_at_most(response, max_bytes)
    except urllib.error.HTTPError as error:
        error.close()
        raise ImageError(f"image URL {shown} answered HTTP {error.code}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        why = f"no answer within {seconds:g} s" if deadline.ended else str(reason) or type(reason).__name__
        raise ImageError(f"image URL {shown} could not be fetched: {why}") from None
    if deadline.ended:  # the body cut short by the deadline
        raise ImageError(f"image URL {shown} could not be fetched: no answer within {seconds:g} s")
    if body is None:
        raise ImageError(f"image URL {shown} sends more than {max_bytes} bytes (limits.max_payload_bytes)",
                         code="payload_too_large")
    return body
