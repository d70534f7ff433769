"""A configuration's mistakes in its author's words: what YAML's parser and pydantic say, explained.

A tab, a line indented to no block above it, a section whose settings were not indented under it,
a misspelled key, a password written in the file: each becomes one problem that says what is
wrong where and what to do, instead of the parser's terms or a cascade of follow-on errors.
"""

from __future__ import annotations

import difflib
import re
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel

from edge_vlm.core.redact import redact, redact_url

PASSWORD_KEYS = frozenset({"password", "passwd", "pass", "pwd", "secret", "token"})
WHERE_CREDENTIALS_GO = ("a password is never written in the configuration file: put it in a systemd credential "
                "(password_credential, see docs/service-and-security.md) or an environment variable (password_env)")


MAX_SHOWN_VALUE = 60
MAX_SHOWN_SOURCE = 1000  # a longer text value is not shown in a problem, only its length


def shown(value: Any) -> str:
    length = len(value if isinstance(value, str) else str(value))
    if length > MAX_SHOWN_SOURCE:
        # Not cut to be redacted: a URL's password may end past the cut, and redacting the whole
        # of a long text takes time quadratic in its length.
        return f"(a value of {length} characters)"
    if isinstance(value, bool) or value is None:  # as the file says it: true, false, null
        return {True: "true", False: "false", None: "null"}[value]
    text = redact(repr(redact_url(value)) if isinstance(value, str) else str(value))
    return text if len(text) <= MAX_SHOWN_VALUE else text[: MAX_SHOWN_VALUE - 1] + "…"


SECRET_KEY = re.compile(r"pass|pwd|secret|token|credential|(^|_)key$|^auth(orization)?$", re.IGNORECASE)


def secret_path(path: tuple[str | int, ...]) -> bool:
    """Whether the value at ``path`` may be a secret (or a misplaced one): never shown in a message."""
    return any(isinstance(p, str) and SECRET_KEY.search(p) is not None for p in path)


def yaml_problem(error: yaml.YAMLError, text: str) -> str | None:
    """One line for a YAML syntax error that has a plainer explanation, None for the others."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or ""
    if mark is None:
        return None
    line, column = mark.line + 1, mark.column + 1
    source = text.splitlines()[mark.line] if mark.line < len(text.splitlines()) else ""
    if "'\\t'" in problem:
        return (f"line {line}, column {column}: a tab character: YAML indents with spaces only; "
                "replace the tab with spaces")
    if problem.startswith("expected <block end>") or "could not find expected ':'" in problem:
        above = _line_above(text, mark.line)
        against = "" if above is None else (
            f", line {above[0]} {above[1]} ({_spaces(above[2])})")
        return (f"line {line}: {_quoted(source)} is indented {_spaces(_indent(source))}, which lines up with no "
                f"block above it{against}: the keys of one mapping, and the items of one list, start in the same "
                "column; indent with spaces, two more for what belongs under a key")
    if problem.startswith("mapping values are not allowed"):
        return (f"line {line}, column {column}: a ': ' where a value was expected: put a value that holds ': ' in "
                "quotes (\"…\"), or indent this key under a key that ends with ':'")
    return None


def _quoted(source: str) -> str:
    """A line of the file as a problem shows it: stripped, and shown as a value is (a secret's never)."""
    key, colon, _ = source.strip().partition(":")
    return shown(f"{key}: ***" if colon and SECRET_KEY.search(key) else source.strip())


def _indent(source: str) -> int:
    return len(source) - len(source.lstrip(" "))


def _spaces(n: int) -> str:
    return "not at all" if n == 0 else f"{n} space{'s' if n != 1 else ''}"


def _line_above(text: str, index: int) -> tuple[int, str, int] | None:
    """The nearest line above ``index`` holding something: its number, its text and its indentation."""
    lines = text.splitlines()
    for number in range(index - 1, -1, -1):
        stripped = lines[number].strip()
        if stripped and not stripped.startswith("#"):
            return number + 1, _quoted(stripped), _indent(lines[number])
    return None


def keys_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> set[str]:
    """The settings the mapping at pydantic location ``loc`` can hold (union tags and dict keys in
    ``loc`` are followed), empty when not known."""
    models = [model]
    for part in loc:
        if isinstance(part, int):
            continue
        inside = [m for model_ in models if part in model_.model_fields
                  for m in _models_in(model_.model_fields[part].annotation)]
        # else a union's tag (a source's "rtsp") or a dict's key (a profile's name)
        models = inside or [m for m in models if _tag(m) == part] or models
        if not models:
            return set()
    return {name for m in models for name in m.model_fields}


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _models_in(get_args(annotation)[0])
    if origin in (Union, types.UnionType, list, tuple, dict):
        return [m for argument in get_args(annotation) for m in _models_in(argument)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _tag(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("type")
    if field is None or get_origin(field.annotation) is not Literal:
        return None
    values = get_args(field.annotation)
    return str(values[0]) if len(values) == 1 else None


def unknown_key(key: str, known: set[str]) -> str:
    """What to say of a key no setting here has."""
    if key.lower() in PASSWORD_KEYS and "password_env" in known:
        return WHERE_CREDENTIALS_GO
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    if close:
        return f"no such setting here; did you mean {close[0]}?"
    shown = ", ".join(sorted(known)[:16]) + (", …" if len(known) > 16 else "")
    return f"no such setting here; the settings here are: {shown}" if known else "no such setting here"
