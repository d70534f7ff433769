"""What one doctor check found, and the helpers every check uses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Status = Literal["PASS", "FAIL", "WARN", "SKIP"]
FindLibrary = Callable[[str], str | None]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    finding: str
    fix: str = ""


def on_board(root: Path, path: Path) -> Path:
    """``path`` as seen under ``root`` (the board's / unless a test builds one)."""
    return root / path.relative_to("/") if path.is_absolute() else path


def size_text(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"
