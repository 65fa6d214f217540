"""The Containerfile's Ceph client is the one the release matrix tests (Tentacle, forky)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from vaultbridge.testenv import images
from vaultbridge.testenv.releases import RELEASES, ROOT_PACKAGES

CONTAINERFILE = Path(__file__).resolve().parents[2] / "charts/vaultbridge/image/Containerfile"


def test_the_image_base_is_the_newest_tested_release() -> None:
    text = CONTAINERFILE.read_text()
    bases = re.findall(r"^FROM\s+\S*debian:(\w+)-slim", text, re.MULTILINE)
    newest = RELEASES[max(RELEASES)]
    assert bases and set(bases) == {newest.suite}


def test_the_image_installs_the_ceph_client_packages_the_matrix_runs() -> None:
    text = CONTAINERFILE.read_text()
    for package in ("python3-rados", "ceph-common", "python3-venv"):
        assert package in text and package in ROOT_PACKAGES


def _final_stage(text: str) -> str:
    return text[text.rindex("\nFROM ") :]


def test_make_image_builds_what_the_containerfile_says() -> None:
    """``make image`` (mmdebstrap) and the Containerfile (Docker/Podman): the same base
    release, the same packages in the final stage, uid, entrypoint, environment and port."""
    text = CONTAINERFILE.read_text()
    final = _final_stage(text)
    assert re.search(rf"^FROM\s+\S*debian:{images.VAULTBRIDGE_SUITE}-slim\s*$", final, re.M)
    installed = re.search(r"apt-get install -y --no-install-recommends\s*\\?\s*([^&]+)&&", final)
    assert installed is not None
    assert set(installed.group(1).replace("\\", " ").split()) == set(images.VAULTBRIDGE_PACKAGES)
    assert f"USER {images.VAULTBRIDGE_USER}" in final
    entrypoint = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", final, re.M)
    assert entrypoint is not None
    assert json.loads(entrypoint.group(1)) == list(images.VAULTBRIDGE_ENTRYPOINT)
    assert re.search(r'^CMD \["run"\]$', final, re.M) and "EXPOSE 8080" in final
    env = re.search(r"^ENV (.*)$", final, re.M)
    assert env is not None
    for pair in env.group(1).split():
        name, value = pair.split("=", 1)
        if name == "PATH":
            assert images.VAULTBRIDGE_ENV["PATH"].startswith(value.replace("$PATH", ""))
        else:
            assert images.VAULTBRIDGE_ENV[name] == value
    assert "--uid 10001 --gid 0" in final and ":10001:0:" in images.PASSWD_LINE
    assert "--system-site-packages /opt/vaultbridge" in final
