"""``edge-vlm install-service``: make this board run edge_vlm as a systemd service (as root).

What it sets up, each step said as it is done (or found done):

- the groups ``render`` and ``video`` (the unit's ``SupplementaryGroups=``; a missing one would stop the
  unit from starting), the system user and group ``edge-vlm`` (no login, home /var/lib/edge-vlm), a
  member of both;
- ``/etc/edge-vlm`` (0750 root:edge-vlm) with the example configuration as ``edge_vlm.yaml`` (0640
  root:edge-vlm) unless a configuration is there: a user's configuration is never overwritten;
- ``/etc/edge-vlm/credentials`` (0700 root) with an empty ``mqtt_password`` (0600 root) unless one is
  there: the unit's ``LoadCredential=`` needs the file to exist;
- ``/var/lib/edge-vlm/models`` (0750 edge-vlm), where models/README.md puts the model files;
- the unit, ``/etc/systemd/system/edge-vlm.service``, from the packaged one with ``ExecStart=`` pointing
  at the ``edge-vlm`` of the Python environment this runs in; replaced when it differs (local changes
  belong in a drop-in: ``systemctl edit edge-vlm``); then ``systemctl daemon-reload``. Refused, before
  anything is changed, when that environment (its script, interpreter, standard library or edge_vlm,
  symlinks resolved) is under /home, /root or /run/user: the unit's ``ProtectHome=yes`` hides them.

``--root DIR`` does all of it inside a staging tree (``useradd --prefix``, no systemctl) and
``--dry-run`` only says what it would do; both are how the tests run it. With ``--root`` a Python
environment under /home or /root is only noted: the staged tree's system need not share this host's paths.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from edge_vlm.install.accounts import read_entries
from edge_vlm.install.installer import CONFIG_EXAMPLE, CREDENTIAL_FILES, DEVICE_GROUPS, HOME, Installer
from edge_vlm.install.unit import (
    PACKAGED_EXECUTABLE,
    UNIT_NAME,
    InstallError,
    packaged,
    protect_home_problem,
    refuse_hidden_by_protect_home,
    render_unit,
    runtime_paths,
    service_command,
)

# What the command line and the tests use of the modules that do the work.
__all__ = [
    "CONFIG_EXAMPLE",
    "CREDENTIAL_FILES",
    "DEVICE_GROUPS",
    "PACKAGED_EXECUTABLE",
    "UNIT_NAME",
    "add_parser",
    "cmd_install_service",
    "next_steps",
    "packaged",
    "protect_home_problem",
    "read_entries",
    "render_unit",
    "runtime_paths",
    "service_command",
]


def next_steps(command: str) -> str:
    return "\n".join([
        "Next:",
        f"  1. Edit /etc/edge-vlm/edge_vlm.yaml (models: {HOME}/models), then check it:",
        f"       sudo env CREDENTIALS_DIRECTORY=/etc/edge-vlm/credentials {command} check",
        "     A broker password: into /etc/edge-vlm/credentials/mqtt_password, and",
        "     `password_credential: mqtt_password` under mqtt: in the configuration.",
        "  2. sudo systemctl enable --now edge-vlm",
        "  3. journalctl -u edge-vlm -f",
    ])


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``install-service`` on the ``edge-vlm`` command line."""
    parser = commands.add_parser(
        "install-service", help="as root: create the edge-vlm user, install the systemd unit and the configuration",
        description="Create the edge-vlm user, install the systemd unit and the configuration (as root). "
                    "Safe to run again: what is there is left, a configuration is never overwritten.")
    parser.add_argument("--root", type=Path, default=Path("/"),
                        help="install into this staging tree instead of the running system (no systemctl): an "
                             "existing directory holding the image's etc/passwd and etc/group, e.g. a copy of "
                             "them or a mounted board image")
    parser.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")
    parser.set_defaults(handler=cmd_install_service)


def cmd_install_service(args: argparse.Namespace) -> int:
    root: Path = args.root
    if not args.dry_run and os.geteuid() != 0:
        print("install-service must run as root (sudo), or with --dry-run", file=sys.stderr)
        return 1
    if not os.path.isdir(root):  # False, not an exception, for a directory we may not enter
        print(f"{root}: not a directory (or not ours to enter)", file=sys.stderr)
        return 1
    installer = Installer(root, dry_run=args.dry_run)
    try:
        command = service_command()
        problem = refuse_hidden_by_protect_home(command, staging=installer.staging)
        print(f"edge-vlm install-service{' (dry run)' if args.dry_run else ''}, into {root}:")
        if problem is not None:
            print(f"note: on this host {problem}")
        installer.run(command)
    except (InstallError, OSError) as exc:
        print(f"install-service stopped: {exc}", file=sys.stderr)
        return 1
    verb = "would change" if args.dry_run else "changed"
    print(f"{len(installer.changed)} {verb}, {len(installer.kept)} left as they were.")
    if not installer.staging and not args.dry_run:
        print(next_steps(command))
    return 0
