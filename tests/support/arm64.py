"""An arm64 Debian bookworm root (Armbian's base) to install and run the wheel in, as on a board.

Made once with ``debootstrap --arch=arm64`` and kept in the cache (``EDGE_VLM_ARM64_CACHE``, default
``.cache/arm64``); on an x86-64 machine its programs run under qemu-user-static through binfmt_misc.
Every command runs in a private mount namespace (``unshare --mount``), so the root's /proc and /dev
mounts vanish with it: nothing stays mounted in the cache, which can always be deleted.
Needs root (debootstrap, chroot, binfmt_misc); the first run takes about 3 minutes here. On an
x86-64 machine it registers qemu-user-static for aarch64 binaries with the kernel (binfmt_misc) if
nothing has, and leaves that registration in place, as installing qemu-user-static with systemd does.
The Debian mirror is this machine's apt mirror (``EDGE_VLM_DEBIAN_MIRROR`` overrides it).

    python -m tests.support.arm64      make the root (scripts/test-package --setup)
"""

from __future__ import annotations

import fcntl
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SUITE = "bookworm"
PACKAGES = "python3,python3-venv,ca-certificates"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
CACHE_ENV = "EDGE_VLM_ARM64_CACHE"
MIRROR_ENV = "EDGE_VLM_DEBIAN_MIRROR"
REQUIRED_ENV = "EDGE_VLM_ARM64_REQUIRED"  # set to 1 (CI): a machine that cannot make the root fails the test
READY = ".edge_vlm-ready"  # written last: a root without it is half made and made again
MADE_BY = f"debootstrap --arch=arm64 --variant=minbase --include={PACKAGES} {SUITE}"  # a root made otherwise is remade
BINFMT = Path("/proc/sys/fs/binfmt_misc")
QEMU_RULE = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")  # qemu-user-static's registration line
DEBOOTSTRAP_TIMEOUT_S = 1200.0


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path(__file__).parents[2] / ".cache" / "arm64")


def unavailable() -> str | None:
    if sys.platform != "linux":
        return "an arm64 Debian root needs Linux"
    if os.geteuid() != 0:
        return "an arm64 Debian root needs root (debootstrap, chroot, binfmt_misc): run as root"
    if subprocess.run(["unshare", "--mount", "true"], capture_output=True, check=False).returncode != 0:
        return "an arm64 Debian root needs a private mount namespace (unshare --mount), which this machine refuses"
    return None


def _apt_install(*packages: str) -> None:
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], check=True,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, stdout=subprocess.DEVNULL)


def ensure_emulation() -> None:
    """debootstrap, and on a non-arm64 machine qemu-user-static registered for aarch64 binaries."""
    native = platform.machine() == "aarch64"
    missing = [package for package, present in (("debootstrap", shutil.which("debootstrap")),
                                                ("qemu-user-static", native or QEMU_RULE.exists())) if not present]
    if missing:
        _apt_install(*missing)
    if native or (BINFMT / "qemu-aarch64").exists():
        return
    if not (BINFMT / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=True)
    # without systemd-binfmt (containers, CI) nothing registers it: the F flag keeps the interpreter
    # open, so it runs inside the chroot too
    (BINFMT / "register").write_text(QEMU_RULE.read_text().strip())


def mirror() -> str:
    """The Debian mirror this machine's apt uses (it is the one that is reachable)."""
    if chosen := os.environ.get(MIRROR_ENV):
        return chosen
    for source in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        text = source.read_text() if source.is_file() else ""
        if found := re.search(r"^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+/debian)/?\s", text, re.MULTILINE):
            return found.group(1)
    return DEFAULT_MIRROR


@contextmanager
def root_in_use() -> Iterator[Path]:
    """The cached root, made first if needed, for this process alone until the block ends (a lock
    file in the cache: another run waits rather than change the same root)."""
    ensure_emulation()
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    root = cache / "root"
    with (cache / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = root / READY
        if not ready.exists() or ready.read_text().splitlines()[0] != MADE_BY:
            started = time.monotonic()
            making = cache / "root.making"
            shutil.rmtree(making, ignore_errors=True)
            shutil.rmtree(root, ignore_errors=True)
            subprocess.run(["unshare", "--mount", "--propagation", "private", *MADE_BY.split(), str(making), mirror()],
                           check=True, stdout=subprocess.DEVNULL, timeout=DEBOOTSTRAP_TIMEOUT_S)
            making.rename(root)
            ready.write_text(f"{MADE_BY}\nmade in {time.monotonic() - started:.0f} s\n")
        # this machine's trust and name servers, as a board on this network would have them
        shutil.copyfile("/etc/ssl/certs/ca-certificates.crt", root / "etc/ssl/certs/ca-certificates.crt")
        shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
        yield root


def run(root: Path, command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``command`` (a shell line) as root inside ``root``, with a clean environment; output captured."""
    inside = ["chroot", str(root), "/usr/bin/env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/root",
              "LANG=C.UTF-8", "/bin/sh", "-c", command]
    quoted = shlex.quote(str(root))
    mounts = f"mount -t proc proc {quoted}/proc && mount --bind /dev {quoted}/dev && exec \"$@\""
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", mounts, "sh", *inside],
                          capture_output=True, text=True, timeout=timeout, check=False)


if __name__ == "__main__":
    if (why := unavailable()) is not None:
        sys.exit(why)
    with root_in_use() as made:
        print(f"{made}: {' '.join((made / READY).read_text().split())}")
