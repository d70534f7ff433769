"""Read the YAML file, validate it, and report every problem with its line, path and value.

Problems are printed one per line, as ``line N: cameras[1].source.url: <value>: <message>``, so that
the journal shows each on its own line and a user can jump straight to it.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edge_vlm.config.base import PATTERN_HINTS
from edge_vlm.config.files import os_problem
from edge_vlm.config.mistakes import keys_at, secret_path, shown, unknown_key
from edge_vlm.config.models import AppConfig
from edge_vlm.config.yaml_reader import MAX_FILE_BYTES, LineMap, PathKey, format_path, parse_yaml
from edge_vlm.core.errors import ConfigError


def _data_path(data: Any, loc: tuple[str | int, ...], missing: bool) -> PathKey:
    """The error location as a path through the user's data.

    pydantic puts union tags and validator names into ``loc``; those are not keys of the YAML,
    so they are dropped, unless ``missing`` and the last one: the key that is missing.
    """
    path: list[str | int] = []
    current = data
    for index, part in enumerate(loc):
        if isinstance(current, dict) and part in current:  # noqa: SIM114 - mypy narrows each branch
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            current = current[part]
        elif missing and index == len(loc) - 1 and isinstance(current, dict):
            current = None
        else:
            continue
        path.append(part)
    return tuple(path)


def _not_indented(data: Any, lines: LineMap, items: list[Any]) -> tuple[list[str], set[tuple[Any, ...]]]:
    """Sections whose settings were not indented under them: ``mqtt:`` left empty, ``host:`` after it at
    the top level. One problem per section, and the errors it explains (to leave out)."""
    if not isinstance(data, dict):
        return [], set()
    top = sorted((lines.line_for((key,)), key) for key in data if isinstance(key, str))
    unknown = {item["loc"][0] for item in items if item["type"] == "extra_forbidden" and len(item["loc"]) == 1}
    orphans: dict[str, list[str]] = {}
    section: str | None = None  # the empty section the lines since belong to
    for _, key in top:
        if data[key] is None and key not in unknown:
            section = key
        elif key in unknown and section is not None and key in keys_at(AppConfig, (section,)):
            orphans.setdefault(section, []).append(key)
        else:
            section = None
    problems = []
    for section, keys in orphans.items():
        several = len(keys) > 1
        problems.append(f"line {lines.line_for((section,))}: {section}: nothing is indented under it, but "
                        f"{', '.join(keys)} below {'are its settings' if several else 'is one of its settings'}: "
                        f"indent {'them' if several else 'it'} under {section}: with spaces (two more than {section})")
    explained = {(section,) for section in orphans} | {(key,) for keys in orphans.values() for key in keys}
    return problems, explained


_NAMED_PATH = re.compile(r"^([a-z_]+(?:\[\d+\]|\.[\w-]+)*): (.+)$", re.DOTALL)


def _named_path(data: Any, message: str) -> tuple[PathKey, str]:
    """``cameras[0]: its snapshot_topics …`` → the path ``cameras, 0`` and the rest of the message,
    when the data has that path; else no path and the message as it is."""
    named = _NAMED_PATH.match(message)
    if named is None:
        return (), message
    parts = tuple(int(index) if index else key for key, index in re.findall(r"([\w-]+)|\[(\d+)\]", named.group(1)))
    path = _data_path(data, parts, missing=False)
    return (path, named.group(2)) if path == parts else ((), message)


def format_validation_error(error: ValidationError, data: Any, lines: LineMap) -> list[str]:
    items = error.errors(include_url=False)
    problems, explained = _not_indented(data, lines, items)
    for item in items:
        if tuple(item["loc"])[:1] in explained and (len(item["loc"]) == 1 or item["input"] is None):
            continue
        path = _data_path(data, tuple(item["loc"]), item["type"] == "missing")
        value, message = item["input"], item["msg"].removeprefix("Value error, ")
        context = item.get("ctx") or {}
        if item["type"] == "extra_forbidden":
            message = unknown_key(str(item["loc"][-1]), keys_at(AppConfig, tuple(item["loc"])[:-1]))
        if item["type"] == "string_pattern_mismatch":
            message = PATTERN_HINTS.get(context.get("pattern", ""), message)
        elif item["type"] == "union_tag_invalid":  # an unknown `type:`
            path, value = (*path, "type"), context.get("tag")
            message = f"unknown type; expected one of {context.get('expected_tags')}"
        if not path:  # a check across settings names where it found the problem: put it there
            path, message = _named_path(data, message)
        prefix = f"line {lines.line_for(path)}: {format_path(path)}"
        if isinstance(value, dict | list) or item["type"] == "missing" or secret_path(path):
            problems.append(f"{prefix}: {message}")
        else:
            problems.append(f"{prefix}: {shown(value)}: {message}")
    return problems


@dataclass(frozen=True)
class ConfigFile:
    """A validated configuration and where each setting sits in its file."""

    config: AppConfig
    lines: LineMap

    def where(self, *path: str | int) -> str:
        """``line N: a.b[0]``: the prefix of a problem found later about this setting."""
        return f"line {self.lines.line_for(path)}: {format_path(path)}"


def line_number(problem: str) -> int:
    """N of a problem that starts ``line N:``."""
    return int(problem.split(":", 1)[0].removeprefix("line "))


def load_config_text(text: str, source: str = "<config>") -> ConfigFile:
    data, lines, problems = parse_yaml(text, source)
    if not isinstance(data, dict):
        raise ConfigError(
            [f"line 1: (top level): the file must be a mapping of settings, got {type(data).__name__}"],
        )
    try:
        config = AppConfig.model_validate(data)
    except ValidationError as exc:
        problems += format_validation_error(exc, data, lines)
        raise ConfigError(sorted(problems, key=line_number)) from None
    if problems:
        raise ConfigError(problems)
    return ConfigFile(config, lines)


def _read(path: Path) -> str:
    """The file's text, read only if it is a regular file of at most MAX_FILE_BYTES (a FIFO would
    block the reload, /dev/zero never end)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the configuration file: {os_problem(exc)}"]) from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError([f"{path}: the configuration is not a regular file"])
        if info.st_size > MAX_FILE_BYTES:
            raise ConfigError([f"{path}: the file is {info.st_size} bytes; a configuration may be at most 1 MiB"])
        try:
            data = file.read(MAX_FILE_BYTES + 1)  # it may have grown since
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read the configuration file: {os_problem(exc)}"]) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError([f"{path}: the file is over 1 MiB; a configuration may be at most 1 MiB"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: the configuration file is not UTF-8 text"]) from None


def load_config(path: Path) -> ConfigFile:
    return load_config_text(_read(path), str(path))
