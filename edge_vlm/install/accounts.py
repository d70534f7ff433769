"""The system's users and groups, as /etc/passwd and /etc/group (of the target tree) list them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    """A line of /etc/passwd or /etc/group: name, numeric id, and (groups) members."""

    name: str
    id: int
    members: tuple[str, ...] = ()


def read_entries(path: Path) -> dict[str, Entry]:
    """passwd (id: uid) or group (id: gid, members) entries of a file; {} when it does not exist."""
    entries: dict[str, Entry] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return entries
    is_group = path.name == "group"
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) < 4 or not fields[2].isdigit():
            continue
        members = tuple(m for m in fields[3].split(",") if m) if is_group else ()
        entries[fields[0]] = Entry(fields[0], int(fields[2]), members)
    return entries
