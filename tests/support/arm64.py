"""An arm64 Debian bookworm root (Armbian's base) to install and run the wheel in, as on a board.

Made once with ``debootstrap --arch=arm64`` and kept in the cache (``EDGE_VLM_ARM64_CACHE``, default
``.cache/arm64``); on an x86-64 machine its programs run under qemu-user-static through binfmt_misc.
Every command runs in a private mount namespace (``unshare --mount``), so the root's /proc and /dev
mounts vanish with it: nothing stays mounted in the cache, which can always be deleted.
Needs root (debootstrap, chroot, binfmt_misc); the first run takes about 3 minutes here.

    python -m tests.support.arm64      make the root (scripts/test-package --setup)
"""

from __future__ import annotations

import fcntl
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

SUITE = "bookworm"
PACKAGES = "python3,python3-venv,ca-certificates"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
CACHE_ENV = "EDGE_VLM_ARM64_CACHE"
READY = ".edge_vlm-ready"  # written last: a root without it is half made and made again
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
    sources = [*Path("/etc/apt/sources.list.d").glob("*.sources"), Path("/etc/apt/sources.list")]
    for source in sources:
        text = source.read_text() if source.is_file() else ""
        if found := re.search(r"^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+/debian)/?\s", text, re.MULTILINE):
            return found.group(1)
    return DEFAULT_MIRROR


def ensure_root() -> Path:
    """The cached root, made first if needed (one maker at a time: a lock file in the cache)."""
    ensure_emulation()
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    root = cache / "root"
    with (cache / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / READY).exists():
            started = time.monotonic()
            making = cache / "root.making"
            shutil.rmtree(making, ignore_errors=True)
            shutil.rmtree(root, ignore_errors=True)
            subprocess.run(["unshare", "--mount", "--propagation", "private", "debootstrap", "--arch=arm64",
                            "--variant=minbase", f"--include={PACKAGES}", SUITE, str(making), mirror()],
                           check=True, stdout=subprocess.DEVNULL, timeout=DEBOOTSTRAP_TIMEOUT_S)
            making.rename(root)
            (root / READY).write_text(f"debootstrap {SUITE} arm64: {time.monotonic() - started:.0f} s\n")
    # this machine's trust and name servers, as a board on this network would have them
    shutil.copyfile("/etc/ssl/certs/ca-certificates.crt", root / "etc/ssl/certs/ca-certificates.crt")
    shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
    return root


def run(root: Path, command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``command`` (a shell line) as root inside ``root``, with a clean environment; output captured."""
    inside = ["chroot", str(root), "/usr/bin/env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/root",
              "LANG=C.UTF-8", "/bin/sh", "-c", command]
    mounts = f"mount -t proc proc {root}/proc && mount --bind /dev {root}/dev && exec \"$@\""
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", mounts, "sh", *inside],
                          capture_output=True, text=True, timeout=timeout, check=False)


if __name__ == "__main__":
    if (why := unavailable()) is not None:
        sys.exit(why)
    made = ensure_root()
    print(f"{made}: {(made / READY).read_text().strip()}")
