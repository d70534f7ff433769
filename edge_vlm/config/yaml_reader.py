"""Read a configuration's YAML into plain data, within bounds, remembering the line of each path.

The limits keep any file (a reload's, `check`'s) from exhausting memory, time or the stack; what is
wrong in the YAML itself (a tag, a duplicate key, a bad merge) comes back as problems.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from edge_vlm.config.mistakes import yaml_problem
from edge_vlm.core.errors import ConfigError

PathKey = tuple[str | int, ...]


class LineMap:
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

# What the reader takes, so that no file (a reload's, `check`'s) can exhaust memory, time or the
# stack: a configuration is a few kilobytes of a few hundred values, five or six levels deep.
MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 32  # lists and mappings inside each other, and `<<` merges inside merges
MAX_VALUES = 50_000  # values built; an alias counts its values each time it is used ("billion laughs")


class _Refused(Exception):
    """The file is past one of the limits; reading it stops here, with this one problem."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, composing at most MAX_VALUES nodes at most MAX_DEPTH deep.

    Its composer recurses once per level (a RecursionError past a few hundred) and its scanner is
    quadratic in flow nesting (200,000 ``[`` never finish), so the depth is bounded where each node
    starts, before the scanner has read much further.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):  # the node it names is composed already
            return super().compose_node(parent, index)
        line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
        self.nodes += 1
        if self.nodes > MAX_VALUES:
            raise _Refused(f"line {line}: the file holds more than {MAX_VALUES} values")
        if self.depth >= MAX_DEPTH:
            raise _Refused(f"line {line}: lists and mappings nested more than {MAX_DEPTH} deep")
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class _Builder:
    """Plain data from the composed nodes, with the line of each path and the problems found.

    An alias is the node it names, so a few aliases can stand for billions of values, and one inside
    the node it names for an endless one: values are counted each time they are built, and a node
    met again inside itself refuses the file instead of raising RecursionError.
    """

    def __init__(self) -> None:
        self.lines = LineMap()
        self.problems: list[str] = []
        self._constructor = SafeConstructor()
        self._values = 0
        self._open: list[yaml.Node] = []  # the nodes being built, outermost first

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        line = node.start_mark.line + 1
        self.lines.lines.setdefault(path, line)
        if any(node is open_node for open_node in self._open):
            raise _Refused(f"line {line}: {format_path(path)}: an alias used inside the value it names "
                           "(a value that would contain itself)")
        self._values += 1
        if self._values > MAX_VALUES:
            # The node's own line is where an alias's anchor is, maybe far above: the setting's.
            raise _Refused(f"line {self.lines.line_for(path[:1])}: {format_path(path)}: more than {MAX_VALUES} "
                           "values, counting those of an alias each time it is used")
        if len(self._open) >= MAX_DEPTH:
            raise _Refused(f"line {line}: {format_path(path)}: lists, mappings and merges nested more than "
                           f"{MAX_DEPTH} deep, counting those of aliases")
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        self._open.append(node)
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path)
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        finally:
            self._open.pop()

    def scalar(self, node: yaml.Node, path: PathKey) -> Any:
        where = f"line {node.start_mark.line + 1}: {format_path(path)}"
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.YAMLError:
            hint = " (secrets come from environment variables: see mqtt.password_env)" if "secret" in node.tag else ""
            self.problems.append(f"{where}: the YAML tag {node.tag} is not supported{hint}")
        except Exception as exc:  # noqa: BLE001 - PyYAML's constructors raise ValueError, IndexError...
            # A date that does not exist, an integer of more than 4300 digits, `!!int ''`.
            reason = f": {str(exc).partition(';')[0]}" if isinstance(exc, ValueError) else ""
            self.problems.append(f"{where}: not a valid {node.tag.rpartition(':')[2]}{reason}")
        return None

    def mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}  # from `<<: *anchor`; keys written out win over merged ones
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == MERGE_TAG:
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for source in sources:
                    value = self.build(source, path)
                    if not isinstance(value, dict):
                        self.problems.append(f"line {line}: {format_path(path)}: << must merge a mapping")
                        continue
                    merged = {**value, **merged}
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(f"line {line}: {format_path(path)}: a key must be plain text")
                continue
            key = self.scalar(key_node, path)
            if key in result:
                self.problems.append(f"line {line}: {format_path((*path, key))}: key appears twice in the same mapping")
            result[key] = self.build(value_node, (*path, key))
        return {**merged, **result}


def parse_yaml(text: str, source: str) -> tuple[Any, LineMap, list[str]]:
    """Parse YAML into plain data, remembering where each path is; YAML errors become problems.

    A file past a limit is refused with that one problem (ConfigError), whatever else is in it.
    """
    if len(text) > MAX_FILE_BYTES:
        raise ConfigError([f"{source}: {len(text)} characters; a configuration may be at most 1 MiB"])
    builder = _Builder()
    try:
        root = yaml.compose(text, Loader=_BoundedLoader)
        data = {} if root is None else builder.build(root, ())
    except _Refused as exc:
        raise ConfigError([exc.problem]) from None
    except yaml.YAMLError as exc:
        if (explained := yaml_problem(exc, text)) is not None:
            raise ConfigError([explained]) from None
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}: not valid YAML: {problem}"]) from None
    return data, builder.lines, builder.problems


def format_path(path: Iterable[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"
