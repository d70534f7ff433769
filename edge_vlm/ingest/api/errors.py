"""A request the HTTP API refuses: its status and what the client is told (in its API's error shape)."""

from __future__ import annotations


class ApiError(Exception):
    """A request refused: its HTTP status, and what the client is told."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind  # OpenAI's error type
