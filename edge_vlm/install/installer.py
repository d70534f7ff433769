"""The installation's steps, each said as it is done (or found done), in a tree or on the running system."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edge_vlm.install.accounts import Entry, read_entries
from edge_vlm.install.unit import InstallError, packaged, render_unit

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

    def create(self, what: str, action: str, argv: Sequence[str]) -> None:
        """Run ``argv`` and say what it did (in a dry run: say what it would do, and show it)."""
        if self.dry_run:
            self.did(what, action)
            self.command(argv)
            return
        self.command(argv)  # it says nothing it did not do
        self.did(what, action)

    def prefix(self) -> list[str]:
        return ["--prefix", str(self.root.resolve())] if self.staging else []

    def groups(self) -> dict[str, Entry]:
        return read_entries(self.path("etc/group"))

    def users(self) -> dict[str, Entry]:
        return read_entries(self.path("etc/passwd"))

    # The steps, in order

    def run(self, command: str) -> None:
        if self.staging and not self.path("etc/group").is_file():
            raise InstallError(f"{self.root} has no etc/group: a staging root (--root) is a copy of the board's "
                               "file system, with its /etc/passwd and /etc/group")
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
                self.create(f"group {name}", "created (the unit's SupplementaryGroups= needs it)",
                            ["groupadd", "--system", *self.prefix(), name])

    def ensure_user(self) -> None:
        user = self.users().get(USER)
        if user is not None:
            self.left(f"user {USER}", f"exists (uid {user.id})")
            return
        self.create(f"user {USER}", f"created (system user and group, home {HOME}, no login)",
                    ["useradd", "--system", "--user-group", "--home-dir", HOME, "--no-create-home",
                     "--shell", SHELL, "--comment", "edge_vlm daemon", *self.prefix(), USER])

    def ensure_memberships(self) -> None:
        groups = self.groups()
        for name in DEVICE_GROUPS:
            group = groups.get(name)
            if group is not None and USER in group.members:
                self.left(f"{USER} in group {name}", "already a member")
            else:
                self.create(f"{USER} in group {name}", "added",
                            ["usermod", "--append", "--groups", name, *self.prefix(), USER])

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

