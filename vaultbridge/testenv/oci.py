"""OCI image archives written from plain layer tarballs: no registry, no daemon, no repack.

A layer is a tar of a root filesystem as ``mmdebstrap`` (or a few files) made it; the archive is
an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/...``) in one tar, which
``ctr images import`` loads under the name in ``io.containerd.image.name``. Layers are stored
uncompressed (``application/vnd.oci.image.layer.v1.tar``): the archive stays on this machine,
and compressing a few hundred megabytes would cost more time than it saves.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LAYER = "application/vnd.oci.image.layer.v1.tar"
CONFIG = "application/vnd.oci.image.config.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CREATED = "1970-01-01T00:00:00Z"  # the content key names the build, not the clock


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an OCI image configuration the test images set."""

    entrypoint: Sequence[str]
    cmd: Sequence[str] = ()
    user: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str = "/"
    ports: Sequence[int] = ()

    def to_json(self, diff_ids: Sequence[str]) -> dict[str, Any]:
        config: dict[str, Any] = {
            "Entrypoint": list(self.entrypoint),
            "Env": [f"{k}={v}" for k, v in self.env.items()],
            "WorkingDir": self.workdir,
        }
        if self.cmd:
            config["Cmd"] = list(self.cmd)
        if self.user:
            config["User"] = self.user
        if self.ports:
            config["ExposedPorts"] = {f"{p}/tcp": {} for p in self.ports}
        return {
            "created": CREATED,
            "architecture": "amd64",
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        }


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))


def write_archive(out: Path, ref: str, layers: Sequence[Path], config: ImageConfig) -> None:
    """Write the OCI layout archive for image ``ref`` (``registry/name:tag``) to ``out``."""
    descriptors: list[dict[str, Any]] = []
    for layer in layers:
        digest = sha256_file(layer)
        descriptors.append(
            {"mediaType": LAYER, "digest": f"sha256:{digest}", "size": layer.stat().st_size}
        )
    config_blob = json.dumps(
        config.to_json([d["digest"] for d in descriptors]), sort_keys=True
    ).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {
            "mediaType": CONFIG,
            "digest": f"sha256:{hashlib.sha256(config_blob).hexdigest()}",
            "size": len(config_blob),
        },
        "layers": descriptors,
    }
    manifest_blob = json.dumps(manifest, sort_keys=True).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": MANIFEST,
                "digest": f"sha256:{hashlib.sha256(manifest_blob).hexdigest()}",
                "size": len(manifest_blob),
                "annotations": {
                    "io.containerd.image.name": ref,
                    "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[-1],
                },
            }
        ],
    }
    partial = out.with_name(out.name + ".partial")
    with tarfile.open(partial, "w") as archive:
        _add_bytes(archive, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        _add_bytes(archive, "index.json", json.dumps(index, sort_keys=True).encode())
        for blob in (config_blob, manifest_blob):
            _add_bytes(archive, f"blobs/sha256/{hashlib.sha256(blob).hexdigest()}", blob)
        for layer, descriptor in zip(layers, descriptors, strict=True):
            archive.add(layer, f"blobs/sha256/{descriptor['digest'].split(':', 1)[1]}")
    partial.rename(out)


def read_config(archive: Path) -> dict[str, Any]:
    """The image configuration stored in an archive written by :func:`write_archive`."""
    with tarfile.open(archive) as tar:

        def blob(digest: str) -> Any:
            member = tar.extractfile(f"blobs/sha256/{digest.split(':', 1)[1]}")
            assert member is not None
            return json.loads(member.read())

        index_file = tar.extractfile("index.json")
        assert index_file is not None
        index = json.loads(index_file.read())
        manifest = blob(index["manifests"][0]["digest"])
        config: dict[str, Any] = blob(manifest["config"]["digest"])
        return config
