"""Log lines as they come: a handler on one logger, with an event per line a test waits for."""

from __future__ import annotations

import logging
import threading


class LogLines(logging.Handler):
    """The log lines of one logger, and an event per line wanted."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.seen: dict[str, threading.Event] = {}
        self._logger = logging.getLogger(name)

    def __enter__(self) -> LogLines:
        self._level = self._logger.level
        self._logger.addHandler(self)
        self._logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *_: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)

    def when(self, text: str) -> threading.Event:
        return self.seen.setdefault(text, threading.Event())

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        self.lines.append(line)
        for text, event in list(self.seen.items()):
            if text in line:
                event.set()
