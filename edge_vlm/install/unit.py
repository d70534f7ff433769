"""The unit install-service writes: the packaged one, with ``ExecStart=`` running this Python environment.

Refused where the unit's ``ProtectHome=yes`` would hide that environment from the service (its
script, interpreter, standard library or edge_vlm, symlinks resolved, under /home, /root or /run/user).
Also here: the files shipped in edge_vlm/data, and InstallError, which stops the installation.
"""

from __future__ import annotations

import os
import re
import sys
import sysconfig
from importlib import resources
from pathlib import Path

UNIT_NAME = "edge-vlm.service"
# The packaged unit's command; install-service puts the running environment's in its place.
PACKAGED_EXECUTABLE = "/opt/edge-vlm/bin/edge-vlm"
EXEC_START = re.compile(r"^ExecStart=" + re.escape(PACKAGED_EXECUTABLE) + r" ", re.MULTILINE)
# Characters a path may have in ExecStart= without quoting or escaping (% starts a specifier, $ a variable).
PLAIN_PATH = re.compile(r"/[A-Za-z0-9._/+@-]+")


class InstallError(Exception):
    """Something that stops the installation; the message says what to do."""


def packaged(name: str) -> str:
    """A file shipped in edge_vlm/data (the unit, the example configuration)."""
    return (resources.files("edge_vlm") / "data" / name).read_text(encoding="utf-8")


def service_command() -> str:
    """The command that starts edge_vlm from this Python environment: its ``edge-vlm`` script, or
    ``python -m edge_vlm`` when there is none (a source checkout run with ``python -m``)."""
    script = Path(sysconfig.get_path("scripts")) / "edge-vlm"
    found = script.is_file() and os.access(script, os.X_OK)
    parts = [str(script)] if found else [sys.executable, "-m", "edge_vlm"]
    for part in parts:
        if part.startswith("/") and not PLAIN_PATH.fullmatch(part):
            raise InstallError(f"{part}: a path with spaces or special characters cannot go in ExecStart=; "
                               "install edge_vlm in a venv with a plain path, e.g. /opt/edge-vlm")
    return " ".join(parts)


# What the unit's ProtectHome=yes hides from the service: a program, interpreter or library there cannot start.
HIDDEN_BY_PROTECT_HOME = ("/home", "/root", "/run/user")


def runtime_paths(command: str) -> dict[str, str]:
    """What ExecStart=``command`` needs at run time in this Python environment, by description."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # edge_vlm/, not edge_vlm/install/
    return {"ExecStart's program": command.split(maxsplit=1)[0], "the Python interpreter": sys.executable,
            "the Python standard library": sysconfig.get_path("stdlib"), "the edge_vlm package": package}


def protect_home_problem(paths: dict[str, str]) -> str | None:
    """Why the service could not start when one of ``paths`` (or what its symlinks resolve to) is under
    /home, /root or /run/user, which ProtectHome=yes hides; None when none is."""
    for what, path in paths.items():
        for candidate in dict.fromkeys([path, os.path.realpath(path)]):
            hidden = next((top for top in HIDDEN_BY_PROTECT_HOME
                           if candidate == top or candidate.startswith(top + "/")), None)
            if hidden is not None:
                via = "" if candidate == path else f", which resolves to {candidate},"
                return (f"{what} {path}{via} is under {hidden}: the unit's ProtectHome=yes hides {hidden} from "
                        "the service, so it could not start (status 203/EXEC, or a failed import). Install "
                        "edge_vlm into /opt/edge-vlm with a system Python (/usr/bin/python3, not pyenv's or uv's): "
                        "sudo python3 -m venv /opt/edge-vlm && sudo /opt/edge-vlm/bin/pip install <edge_vlm "
                        "checkout or wheel>, then run sudo /opt/edge-vlm/bin/edge-vlm install-service")
    return None


def refuse_hidden_by_protect_home(command: str, *, staging: bool) -> str | None:
    """InstallError when ProtectHome=yes would hide this environment on the running system; on a staging
    tree the problem is only returned, to be noted: the tree's system need not share this host's paths."""
    problem = protect_home_problem(runtime_paths(command))
    if problem is not None and not staging:
        raise InstallError(problem)
    return problem


def render_unit(command: str) -> str:
    """The packaged unit with ``ExecStart=`` running ``command``."""
    unit = packaged(UNIT_NAME)
    if len(EXEC_START.findall(unit)) != 1:
        raise InstallError(f"the packaged {UNIT_NAME} has no 'ExecStart={PACKAGED_EXECUTABLE} ' line")
    return EXEC_START.sub(lambda _: f"ExecStart={command} ", unit)

