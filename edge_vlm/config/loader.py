"""Read the YAML file, validate it, and report every problem with its line, path and value.

Problems are printed one per line, as ``line N: cameras[1].source.url: <value>: <message>``, so that
the journal shows each on its own line and a user can jump straight to it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from edge_vlm.config.base import PATTERN_HINTS
from edge_vlm.config.models import AppConfig
from edge_vlm.errors import ConfigError
from edge_vlm.redact import redact, redact_url

PathKey = tuple[str | int, ...]
MAX_SHOWN_VALUE = 60


class _LineMap:
    """The line where each YAML path starts, to point errors at the file."""

    def __init__(self) -> None:
        self.lines: dict[PathKey, int] = {}

    def line_for(self, path: PathKey) -> int:
        # The deepest part of the path that exists in the file: a missing key is reported on
        # the line of the mapping that should have held it.
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return 1


MERGE_TAG = "tag:yaml.org,2002:merge"


def _scalar(node: yaml.Node, path: PathKey, problems: list[str]) -> Any:
    try:
        return yaml.safe_load(yaml.serialize(node))
    except yaml.YAMLError:
        hint = " (secrets come from environment variables: see mqtt.password_env)" if "secret" in node.tag else ""
        problems.append(f"line {node.start_mark.line + 1}: {format_path(path)}: the YAML tag {node.tag} "
                        f"is not supported{hint}")
        return None


def _mapping(node: yaml.MappingNode, path: PathKey, lines: _LineMap, problems: list[str]) -> dict[Any, Any]:
    result: dict[Any, Any] = {}
    merged: dict[Any, Any] = {}  # from `<<: *anchor`; keys written out win over merged ones
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        if key_node.tag == MERGE_TAG:
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                value = _construct(source, path, lines, problems)
                if not isinstance(value, dict):
                    problems.append(f"line {line}: {format_path(path)}: << must merge a mapping")
                    continue
                merged = {**value, **merged}
            continue
        if not isinstance(key_node, yaml.ScalarNode):
            problems.append(f"line {line}: {format_path(path)}: a key must be plain text")
            continue
        key = _scalar(key_node, path, problems)
        if key in result:
            problems.append(f"line {line}: {format_path((*path, key))}: key appears twice in the same mapping")
        result[key] = _construct(value_node, (*path, key), lines, problems)
    return {**merged, **result}


def _construct(node: yaml.Node, path: PathKey, lines: _LineMap, problems: list[str]) -> Any:
    lines.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        return _mapping(node, path, lines, problems)
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*path, i), lines, problems) for i, item in enumerate(node.value)]
    return _scalar(node, path, problems)


def parse_yaml(text: str, source: str) -> tuple[Any, _LineMap, list[str]]:
    """Parse YAML into plain data, remembering where each path is; YAML errors become problems."""
    lines = _LineMap()
    problems: list[str] = []
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}: not valid YAML: {problem}"]) from None
    if root is None:
        return {}, lines, problems
    return _construct(root, (), lines, problems), lines, problems


def format_path(path: Iterable[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _shown(value: Any) -> str:
    text = redact(repr(redact_url(value)) if isinstance(value, str) else str(value))
    return text if len(text) <= MAX_SHOWN_VALUE else text[: MAX_SHOWN_VALUE - 1] + "…"


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


_SECRET_KEY = re.compile(r"pass|pwd|secret|token|credential|(^|_)key$|^auth(orization)?$", re.IGNORECASE)


def _secret_path(path: PathKey) -> bool:
    """Whether the value at ``path`` may be a secret (or a misplaced one): never shown in a message."""
    return any(isinstance(p, str) and _SECRET_KEY.search(p) is not None for p in path)


def format_validation_error(error: ValidationError, data: Any, lines: _LineMap) -> list[str]:
    problems = []
    for item in error.errors(include_url=False):
        path = _data_path(data, tuple(item["loc"]), item["type"] == "missing")
        value, message = item["input"], item["msg"].removeprefix("Value error, ")
        context = item.get("ctx") or {}
        if item["type"] == "string_pattern_mismatch":
            message = PATTERN_HINTS.get(context.get("pattern", ""), message)
        elif item["type"] == "union_tag_invalid":  # an unknown `type:`
            path, value = (*path, "type"), context.get("tag")
            message = f"unknown type; expected one of {context.get('expected_tags')}"
        prefix = f"line {lines.line_for(path)}: {format_path(path)}"
        if isinstance(value, dict | list) or item["type"] == "missing" or _secret_path(path):
            problems.append(f"{prefix}: {message}")
        else:
            problems.append(f"{prefix}: {_shown(value)}: {message}")
    return problems


@dataclass(frozen=True)
class ConfigFile:
    """A validated configuration and where each setting sits in its file."""

    config: AppConfig
    lines: _LineMap

    def where(self, *path: str | int) -> str:
        """``line N: a.b[0]``: the prefix of a problem found later about this setting."""
        return f"line {self.lines.line_for(path)}: {format_path(path)}"


def _line_number(problem: str) -> int:
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
        raise ConfigError(sorted(problems, key=_line_number)) from None
    if problems:
        raise ConfigError(problems)
    return ConfigFile(config, lines)


def load_config(path: Path) -> ConfigFile:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the configuration file: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: the configuration file is not UTF-8 text"]) from None
    return load_config_text(text, str(path))
