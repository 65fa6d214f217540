"""The Ceph releases the test environment runs, each with its own tools and client library.

- **16** (Pacific): the machine's own Debian bookworm packages, as before.
- **18** (Reef 18.2.7) and **20** (Tentacle 20.2.4): a Debian root filesystem (trixie, forky)
  built from Debian's packages with ``mmdebstrap`` and cached outside the clone
  (``$VAULTBRIDGE_CACHE/rootfs/<suite>-<digest>``, default ``~/.cache/vaultbridge``), built only
  when missing. Its mons, its ``ceph`` CLI and its Python (with that release's
  ``python3-rados``) run in it through ``chroot``, in a private mount namespace of their own
  (``unshare --mount``): ``/proc``, ``/dev`` and the folders they need are bind-mounted there, so
  nothing is left mounted on the machine when they end. They share the machine's loopback.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vaultbridge.testenv.common import TestenvError

__all__ = ["RELEASES", "CephRelease", "release"]

MIRROR = "http://deb.debian.org/debian"
ROOT_PACKAGES = (
    "ceph-mon",
    "ceph-common",
    "ceph-base",
    "python3-rados",
    "python3-venv",
    "ca-certificates",
)
BUILD_TIMEOUT = 900.0
# the files a root needs from the machine to reach PyPI while its venv is built: the resolver,
# and the machine's CA bundle (which may hold the CA of an egress proxy the root's lacks)
HOST_FILES = ("/etc/resolv.conf", "/etc/ssl/certs/ca-certificates.crt")

INSIDE = "VAULTBRIDGE_CEPH_INSIDE_ROOT"
"""Set (to the release) for processes that already run inside a release's root filesystem."""

_IN_ROOT = r"""set -e
root="$1"; shift; count="$1"; shift
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
while [ "$count" -gt 0 ]; do
  mkdir -p "$root$1"; mount --bind "$1" "$root$1"; shift; count=$((count - 1))
done
exec chroot "$root" "$@"
"""


def cache_root() -> Path:
    return Path(os.environ.get("VAULTBRIDGE_CACHE") or Path.home() / ".cache" / "vaultbridge")


@dataclass(frozen=True)
class CephRelease:
    """One Ceph release: where its tools come from, and how a command runs with them."""

    major: int
    name: str
    suite: str | None  # None: the machine's own packages

    @property
    def root(self) -> Path | None:
        """The cached root filesystem (None for the machine's own release)."""
        if self.suite is None:
            return None
        digest = hashlib.sha256(" ".join((self.suite, *ROOT_PACKAGES)).encode()).hexdigest()
        return cache_root() / "rootfs" / f"{self.suite}-{digest[:10]}"

    def command(
        self, argv: Sequence[str], binds: Sequence[Path] = (), cwd: Path | None = None
    ) -> list[str]:
        """``argv`` run with this release's tools; ``binds``: folders it must see (at the same
        path); ``cwd``: where it starts (in the root: ``chroot`` starts at ``/``)."""
        root = self.root
        if root is None or os.environ.get(INSIDE) == str(self.major):
            return list(argv)  # the machine's own tools, or already inside this root
        folders = [str(Path(b).resolve()) for b in binds]
        if cwd is not None:
            argv = ["sh", "-c", 'cd "$0" && exec "$@"', str(Path(cwd).resolve()), *argv]
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            _IN_ROOT,
            "sh",
            str(root),
            str(len(folders)),
            *folders,
            *argv,
        ]

    def ensure(self) -> None:
        """Build the root filesystem when it is missing (about a minute, once per machine)."""
        root = self.root
        if root is None or os.environ.get(INSIDE) == str(self.major):
            return
        if (root / ".complete").exists():
            return
        mmdebstrap = shutil.which("mmdebstrap")
        if mmdebstrap is None:
            raise TestenvError(
                f"ceph {self.major}: `mmdebstrap` is needed to build the {self.suite} root "
                "filesystem; install it with: apt-get install mmdebstrap (make setup does)"
            )
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{root.name}.", dir=root.parent))
        began = time.monotonic()
        argv = [
            mmdebstrap,
            "--quiet",
            "--variant=apt",
            '--aptopt=Acquire::Check-Valid-Until "false"',
            f"--include={','.join(ROOT_PACKAGES)}",
            self.suite or "",
            str(staging),
            MIRROR,
        ]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise TestenvError(f"ceph {self.major}: mmdebstrap {self.suite} timed out") from exc
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise TestenvError(
                f"ceph {self.major}: mmdebstrap {self.suite} failed: " + " | ".join(tail)
            )
        _copy_host_files(staging)
        (staging / ".complete").write_text(f"built in {time.monotonic() - began:.0f} s\n")
        if root.exists():  # built meanwhile by another process: keep that one
            shutil.rmtree(staging, ignore_errors=True)
            return
        staging.rename(root)

    def python(self, requirements: Sequence[str]) -> str:
        """The path, inside the root, of a venv on this release's Python (its ``python3-rados``
        visible) with ``requirements`` installed from PyPI; made once per set of requirements."""
        self.ensure()
        root = self.root
        if root is None:
            raise TestenvError("ceph 16 runs on the project's own venv")
        digest = hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()[:10]
        venv = f"/opt/vaultbridge/venv-{digest}"
        if (root / venv.lstrip("/") / ".complete").exists():
            return f"{venv}/bin/python"
        _copy_host_files(root)
        steps = [
            (["python3", "-m", "venv", "--clear", "--system-site-packages", venv], "venv"),
            ([f"{venv}/bin/pip", "install", "--quiet", *requirements], "pip install"),
        ]
        for argv, what in steps:
            done = subprocess.run(
                self.command(argv),
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT,
                check=False,
            )
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
                raise TestenvError(f"ceph {self.major}: {what} failed: " + " | ".join(tail))
        (root / venv.lstrip("/") / ".complete").write_text("\n".join(requirements) + "\n")
        return f"{venv}/bin/python"

    def python_for(self, requirements: Sequence[str], checkout: Path) -> str:
        """:meth:`python`, with ``checkout`` importable in that venv and its ``vaultbridge``
        command on the venv's PATH (written each time: the checkout may move)."""
        python = self.python(requirements)
        root = self.root
        assert root is not None
        venv = root / Path(python).parent.parent.relative_to("/")
        for site in venv.glob("lib/python3*/site-packages"):
            (site / "vaultbridge-checkout.pth").write_text(f"{Path(checkout).resolve()}\n")
        script = venv / "bin" / "vaultbridge"
        script.write_text(
            f"#!{python}\nimport sys\nfrom vaultbridge.cli import main\n\nsys.exit(main())\n"
        )
        script.chmod(0o755)
        return python

    def version(self) -> str:
        """The release's ``ceph-mon --version`` line."""
        self.ensure()
        done = subprocess.run(
            self.command(["ceph-mon", "--version"]),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise TestenvError(f"ceph {self.major}: ceph-mon --version failed: {done.stderr}")
        return done.stdout.strip()


def _copy_host_files(root: Path) -> None:
    for name in HOST_FILES:
        if Path(name).exists():
            target = root / name.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            shutil.copyfile(name, target)


RELEASES = {
    16: CephRelease(16, "pacific", None),
    18: CephRelease(18, "reef", "trixie"),
    20: CephRelease(20, "tentacle", "forky"),
}


def release(major: int) -> CephRelease:
    if major not in RELEASES:
        known = ", ".join(map(str, RELEASES))
        raise TestenvError(f"ceph: no release {major} in the test environment (known: {known})")
    return RELEASES[major]
