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
import re
import shlex
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

UNIT_NAME = "edge-vlm.service"
CONFIG_EXAMPLE = "edge_vlm.example.yaml"
USER = "edge-vlm"
HOME = "/var/lib/edge-vlm"
SHELL = "/usr/sbin/nologin"
DEVICE_GROUPS = ("render", "video")
CONFIG_DIR = "etc/edge-vlm"
CONFIG_FILE = "etc/edge-vlm/edge_vlm.yaml"
CREDENTIALS_DIR = "etc/edge-vlm/credentials"
CREDENTIAL_FILES = ("mqtt_password",)  # the unit's LoadCredential= lines
MODELS_DIR = "var/lib/edge-vlm/models"
UNIT_FILE = "etc/systemd/system/edge-vlm.service"
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
    return {"ExecStart's program": command.split(maxsplit=1)[0], "the Python interpreter": sys.executable,
            "the Python standard library": sysconfig.get_path("stdlib"),
            "the edge_vlm package": os.path.dirname(os.path.abspath(__file__))}


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


@dataclass
class Installer:
    root: Path
    dry_run: bool = False
    out: Callable[[str], None] = print
    changed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    @property
    def staging(self) -> bool:
        return self.root.resolve() != Path("/")

    def path(self, relative: str) -> Path:
        return self.root / relative

    def shown(self, relative: str) -> str:
        """A path as the target system will see it."""
        return "/" + relative

    def did(self, what: str, action: str) -> None:
        self.changed.append(what)
        self.out(f"  {what}: {'would be ' if self.dry_run else ''}{action}")

    def left(self, what: str, why: str) -> None:
        self.kept.append(what)
        self.out(f"  {what}: {why}")

    def command(self, argv: Sequence[str]) -> None:
        """Run a command (with --prefix in a staging root); its failure stops the installation."""
        if self.dry_run:
            self.out(f"    $ {shlex.join(argv)}")
            return
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)  # noqa: S603
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InstallError(f"{shlex.join(argv)}: {exc}") from exc
        if done.returncode != 0:
            raise InstallError(f"{shlex.join(argv)} failed (exit status {done.returncode}): "
                               f"{(done.stderr or done.stdout).strip()}")

    def prefix(self) -> list[str]:
        return ["--prefix", str(self.root.resolve())] if self.staging else []

    def groups(self) -> dict[str, Entry]:
        return read_entries(self.path("etc/group"))

    def users(self) -> dict[str, Entry]:
        return read_entries(self.path("etc/passwd"))

    # The steps, in order

    def run(self, command: str) -> None:
        self.ensure_groups()
        self.ensure_user()
        self.ensure_memberships()
        self.ensure_dir(CONFIG_DIR, 0o750, group=True)
        self.ensure_file(CONFIG_FILE, packaged(CONFIG_EXAMPLE), 0o640, group=True,
                         created="installed from the example: edit it",
                         kept="exists: left as it is (a configuration is never overwritten)")
        self.ensure_dir(CREDENTIALS_DIR, 0o700, tighten=True)
        for name in CREDENTIAL_FILES:
            self.ensure_file(f"{CREDENTIALS_DIR}/{name}", "", 0o600,
                             created="created empty (0600 root): the unit loads it; a password goes here",
                             kept="exists: left as it is")
        self.ensure_dir("var/lib/edge-vlm", 0o750, owner=True)
        self.ensure_dir(MODELS_DIR, 0o750, owner=True)
        unit_changed = self.install_unit(command)
        self.reload_systemd(unit_changed)

    def ensure_groups(self) -> None:
        existing = self.groups()
        for name in DEVICE_GROUPS:
            if name in existing:
                self.left(f"group {name}", "exists")
            else:
                self.did(f"group {name}", "created (the unit's SupplementaryGroups= needs it)")
                self.command(["groupadd", "--system", *self.prefix(), name])

    def ensure_user(self) -> None:
        user = self.users().get(USER)
        if user is not None:
            self.left(f"user {USER}", f"exists (uid {user.id})")
            return
        self.did(f"user {USER}", f"created (system user and group, home {HOME}, no login)")
        self.command(["useradd", "--system", "--user-group", "--home-dir", HOME, "--no-create-home",
                      "--shell", SHELL, "--comment", "edge_vlm daemon", *self.prefix(), USER])

    def ensure_memberships(self) -> None:
        groups = self.groups()
        for name in DEVICE_GROUPS:
            group = groups.get(name)
            if group is not None and USER in group.members:
                self.left(f"{USER} in group {name}", "already a member")
            else:
                self.did(f"{USER} in group {name}", "added")
                self.command(["usermod", "--append", "--groups", name, *self.prefix(), USER])

    def ids(self, *, owner: bool, group: bool) -> tuple[int, int]:
        """uid and gid for a path: root, or edge-vlm's (owner) / edge-vlm's group (group)."""
        if self.dry_run and USER not in self.users():
            return 0, 0  # not created yet: nothing is written in a dry run anyway
        uid = self.users()[USER].id if owner else 0
        gid = self.groups()[USER].id if owner or group else 0
        return uid, gid

    def who(self, *, owner: bool, group: bool) -> str:
        if owner:
            return f"{USER}:{USER}"
        return f"root:{USER}" if group else "root"

    def ensure_dir(self, relative: str, mode: int, *, owner: bool = False, group: bool = False,
                   tighten: bool = False) -> None:
        path, what = self.path(relative), self.shown(relative)
        if path.is_dir():
            current = path.stat().st_mode & 0o777
            if tighten and current != mode:
                self.did(what, f"mode {current:04o} changed to {mode:04o}")
                if not self.dry_run:
                    path.chmod(mode)
            else:
                self.left(what, f"exists ({current:04o})")
            return
        self.did(what, f"created ({mode:04o} {self.who(owner=owner, group=group)})")
        if self.dry_run:
            return
        path.mkdir(mode=mode, parents=True)
        os.chown(path, *self.ids(owner=owner, group=group))
        path.chmod(mode)  # mkdir's mode is masked by the umask

    def ensure_file(self, relative: str, text: str, mode: int, *, created: str, kept: str,
                    group: bool = False) -> None:
        path, what = self.path(relative), self.shown(relative)
        if path.exists() or path.is_symlink():
            self.left(what, kept)
            return
        self.did(what, created)
        if self.dry_run:
            return
        # Created with its final mode and owner before a byte is written: never readable by others.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            os.fchown(stream.fileno(), *self.ids(owner=False, group=group))
            os.fchmod(stream.fileno(), mode)
            stream.write(text)

    def install_unit(self, command: str) -> bool:
        path, what = self.path(UNIT_FILE), self.shown(UNIT_FILE)
        unit = render_unit(command)
        try:
            current: str | None = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        if current == unit:
            self.left(what, f"unchanged (ExecStart={command} run ...)")
            return False
        self.did(what, f"{'installed' if current is None else 'replaced with the packaged unit'} "
                       f"(ExecStart={command} run ...)")
        if current is not None:
            self.out("    local changes belong in a drop-in: systemctl edit edge-vlm")
        if not self.dry_run:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{os.getpid()}")
            partial.write_text(unit, encoding="utf-8")
            partial.chmod(0o644)
            partial.replace(path)
        return True

    def reload_systemd(self, unit_changed: bool) -> None:
        if self.staging:
            self.left("systemctl daemon-reload", "skipped (--root: not the running system)")
        elif not unit_changed:
            self.left("systemctl daemon-reload", "not needed (the unit did not change)")
        elif not Path("/run/systemd/system").is_dir():
            self.left("systemctl daemon-reload", "skipped: systemd is not running here")
        else:
            self.did("systemctl daemon-reload", "done")
            self.command(["systemctl", "daemon-reload"])


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
                        help="install into this staging tree instead of the running system (no systemctl)")
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
