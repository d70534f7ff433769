"""What is wrong with a file the configuration names, in the words every check uses.

From the errno, because ``Path.exists()`` and ``is_file()`` say False for a symlink loop as for a
missing file, which sent users looking for a file that is there.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_NOT_THERE = {
    errno.ENOENT: "file not found",
    errno.ENOTDIR: "file not found",  # a part of the path is a file
    errno.ELOOP: "symlink loop",
}


def not_there(exc: OSError) -> str | None:
    """"file not found" or "symlink loop" when ``exc`` says there is no file at the path, else None."""
    return _NOT_THERE.get(exc.errno or 0)


def os_problem(exc: OSError) -> str:
    """The system's words for why opening or reading a path failed, but "symlink loop" for ELOOP
    (its "Too many levels of symbolic links" does not say it is a loop)."""
    return "symlink loop" if exc.errno == errno.ELOOP else exc.strerror or str(exc)


def file_problem(path: Path) -> str | None:
    """Why ``path`` is not a regular file this user can read, or None."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return not_there(exc) or os_problem(exc)
    if not stat.S_ISREG(mode):
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "not readable by this user"
    return None
