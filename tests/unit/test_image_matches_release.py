"""The Containerfile's Ceph client is the one the release matrix tests (Tentacle, forky)."""

from __future__ import annotations

import re
from pathlib import Path

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
