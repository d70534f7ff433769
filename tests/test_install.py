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


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("install-service sets owners: it runs as root")
    if shutil.which("useradd") is None:
        pytest.skip("useradd (shadow) is not installed")
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
    # A staging tree's system need not share this host's paths: a Python under /root here is only noted.
    problem = install.protect_home_problem(install.runtime_paths(install.service_command()))
    assert [line for line in out.splitlines() if line.startswith("note:")] == (
        [] if problem is None else [f"note: on this host {problem}"])


def test_without_root_it_stops_before_touching_anything(staging: Path) -> None:
    before = tree(staging)
    command = [sys.executable, "-m", "edge_vlm", "install-service", "--root", str(staging)]

    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command],
                          capture_output=True, text=True, check=False, timeout=60, cwd="/")

    assert done.returncode == 1
    assert "install-service must run as root" in done.stderr
    assert tree(staging) == before


def test_a_staging_root_without_etc_says_so_and_claims_nothing(staging: Path, tmp_path: Path) -> None:
    """Issue 14: an empty --root printed "group render: created", then groupadd failed."""
    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run([sys.executable, "-m", "edge_vlm", "install-service", "--root", str(empty)],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 1
    assert f"{empty} has no etc/group: a staging root (--root) is a copy of the board's file system" in done.stderr
    assert "created" not in done.stdout
    assert list(empty.iterdir()) == []


def test_a_python_environment_that_protect_home_hides_is_named_with_the_way_out(tmp_path: Path) -> None:
    if install.protect_home_problem({"tmp": str(tmp_path)}) is not None:
        pytest.skip(f"{tmp_path} is itself under /home, /root or /run/user")
    venv = tmp_path / "venv/bin"
    venv.mkdir(parents=True)
    (venv / "pyenv").symlink_to("/root/.pyenv/versions/3.11.7/bin/python3.11")
    (venv / "uv").symlink_to("/home/pi/.local/share/uv/python/cpython-3.11.7-linux-aarch64-gnu/bin/python3.11")
    (venv / "system").symlink_to("/usr/bin/python3")

    pyenv = install.protect_home_problem({"the edge-vlm program": "/opt/edge-vlm/bin/edge-vlm",
                                          "the Python interpreter": str(venv / "pyenv")})
    assert pyenv == (
        f"the Python interpreter {venv}/pyenv, which resolves to /root/.pyenv/versions/3.11.7/bin/python3.11, "
        "is under /root: the unit's ProtectHome=yes hides /root from the service, so it could not start (status "
        "203/EXEC, or a failed import). Install edge_vlm into /opt/edge-vlm with a system Python (/usr/bin/python3, "
        "not pyenv's or uv's): sudo python3 -m venv /opt/edge-vlm && sudo /opt/edge-vlm/bin/pip install <edge_vlm "
        "checkout or wheel>, then run sudo /opt/edge-vlm/bin/edge-vlm install-service")
    uv = install.protect_home_problem({"the Python interpreter": str(venv / "uv")})
    assert uv is not None and "is under /home: the unit's ProtectHome=yes hides /home" in uv
    home = install.protect_home_problem({"the edge-vlm program": "/home/pi/venv/bin/edge-vlm"})
    assert home is not None and home.startswith("the edge-vlm program /home/pi/venv/bin/edge-vlm is under /home:")
    run_user = install.protect_home_problem({"the edge_vlm package": "/run/user/1000/edge_vlm"})
    assert run_user is not None and "is under /run/user" in run_user
    assert install.protect_home_problem({"the edge-vlm program": "/opt/edge-vlm/bin/edge-vlm",
                                         "the Python interpreter": str(venv / "system"),
                                         "the Python standard library": "/usr/lib/python3.11",
                                         "the edge_vlm package": "/homestead/edge_vlm"}) is None


def test_install_service_refuses_this_environment_when_protect_home_hides_it() -> None:
    """The real command on the running system (a dry run: it could only say what it would do)."""
    problem = install.protect_home_problem(install.runtime_paths(install.service_command()))
    if problem is None:
        pytest.skip(f"this Python environment ({sys.executable}) is not under /home, /root or /run/user")

    done = subprocess.run([sys.executable, "-m", "edge_vlm", "install-service", "--dry-run"],
                          capture_output=True, text=True, check=False, timeout=60)

    assert (done.returncode, done.stdout, done.stderr) == (1, "", f"install-service stopped: {problem}\n")
