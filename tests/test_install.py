"""``edge-vlm install-service`` into a staging root: the real command, the real useradd/groupadd/usermod
(``--prefix``), run twice; the root starts as a copy of this machine's /etc/passwd and /etc/group."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edge_vlm import install
from edge_vlm.install import read_entries

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "edge_vlm.example.yaml"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="install-service sets owners: it runs as root"),
    pytest.mark.skipif(shutil.which("useradd") is None, reason="useradd (shadow) is not installed"),
]


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for name in ("passwd", "group"):
        shutil.copy(f"/etc/{name}", root / "etc" / name)
    return root


def install_service(root: Path, *options: str) -> str:
    done = subprocess.run([sys.executable, "-m", "edge_vlm", "install-service", "--root", str(root), *options],
                          capture_output=True, text=True, check=False, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")
    return done.stdout


def lines(out: str) -> dict[str, str]:
    """``  what: action`` lines of the report, by what."""
    return dict(line.strip().split(": ", 1) for line in out.splitlines() if line.startswith("  ") and ": " in line)


def owner_and_mode(path: Path) -> tuple[int, int, int]:
    info = path.stat()
    return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


def tree(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def test_installs_everything_then_a_second_run_changes_nothing(staging: Path) -> None:
    host_groups = read_entries(Path("/etc/group"))

    first = lines(install_service(staging))

    users, groups = read_entries(staging / "etc/passwd"), read_entries(staging / "etc/group")
    user = users["edge-vlm"]
    passwd_line = next(line for line in (staging / "etc/passwd").read_text().splitlines()
                       if line.startswith("edge-vlm:"))
    assert passwd_line.split(":")[5:] == ["/var/lib/edge-vlm", "/usr/sbin/nologin"]
    assert user.id < 1000 and groups["edge-vlm"].id < 1000  # system ids
    uid, gid = user.id, groups["edge-vlm"].id
    for name in install.DEVICE_GROUPS:
        assert "edge-vlm" in groups[name].members
        assert first[f"group {name}"] == ("exists" if name in host_groups else
                                          "created (the unit's SupplementaryGroups= needs it)")
    etc = staging / "etc/edge-vlm"
    assert owner_and_mode(etc) == (0, gid, 0o750)
    assert owner_and_mode(etc / "edge_vlm.yaml") == (0, gid, 0o640)
    assert (etc / "edge_vlm.yaml").read_text() == EXAMPLE.read_text()
    assert owner_and_mode(etc / "credentials") == (0, 0, 0o700)
    assert owner_and_mode(etc / "credentials/mqtt_password") == (0, 0, 0o600)
    assert (etc / "credentials/mqtt_password").read_bytes() == b""
    assert owner_and_mode(staging / "var/lib/edge-vlm/models") == (uid, gid, 0o750)
    unit = staging / "etc/systemd/system/edge-vlm.service"
    assert owner_and_mode(unit) == (0, 0, 0o644)
    executable = Path(sys.executable).with_name("edge-vlm")
    assert f"\nExecStart={executable} run -c /etc/edge-vlm/edge_vlm.yaml\n" in unit.read_text()
    assert unit.read_text() == install.render_unit(str(executable))
    assert first["systemctl daemon-reload"] == "skipped (--root: not the running system)"

    # The user edits the configuration and puts the password in; the second run leaves both alone.
    (etc / "edge_vlm.yaml").write_text("node_id: mine\n")
    (etc / "credentials/mqtt_password").write_text("s3cret\n")
    before = tree(staging)
    out = install_service(staging)

    assert tree(staging) == before
    assert (etc / "edge_vlm.yaml").read_text() == "node_id: mine\n"
    second = lines(out)
    assert second["user edge-vlm"] == f"exists (uid {uid})"
    assert second["/etc/edge-vlm/edge_vlm.yaml"] == "exists: left as it is (a configuration is never overwritten)"
    assert second["/etc/systemd/system/edge-vlm.service"].startswith("unchanged")
    assert out.rstrip().endswith(f"0 changed, {len(second)} left as they were.")
    assert [line for line in (staging / "etc/passwd").read_text().splitlines() if line.startswith("edge-vlm:")] == [
        passwd_line]


def test_an_outdated_unit_is_replaced_and_loose_credentials_tightened(staging: Path) -> None:
    install_service(staging)
    unit = staging / "etc/systemd/system/edge-vlm.service"
    unit.write_text("[Service]\nExecStart=/old/edge-vlm run\n")
    (staging / "etc/edge-vlm/credentials").chmod(0o755)

    out = lines(install_service(staging))

    assert out["/etc/systemd/system/edge-vlm.service"].startswith("replaced with the packaged unit")
    assert unit.read_text() == install.render_unit(install.service_command())
    assert out["/etc/edge-vlm/credentials"] == "mode 0755 changed to 0700"
    assert owner_and_mode(staging / "etc/edge-vlm/credentials")[2] == 0o700


def test_a_dry_run_says_everything_and_changes_nothing(staging: Path) -> None:
    before = tree(staging)

    out = install_service(staging, "--dry-run")

    assert tree(staging) == before
    report = lines(out)
    assert report["user edge-vlm"].startswith("would be created")
    assert report["/etc/edge-vlm/edge_vlm.yaml"] == "would be installed from the example: edit it"
    assert f"$ useradd --system --user-group --home-dir /var/lib/edge-vlm --no-create-home --shell " \
           f"/usr/sbin/nologin --comment 'edge_vlm daemon' --prefix {staging} edge-vlm" in out


def test_without_root_it_stops_before_touching_anything(staging: Path) -> None:
    before = tree(staging)
    command = [sys.executable, "-m", "edge_vlm", "install-service", "--root", str(staging)]

    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command],
                          capture_output=True, text=True, check=False, timeout=60, cwd="/")

    assert done.returncode == 1
    assert "install-service must run as root" in done.stderr
    assert tree(staging) == before
