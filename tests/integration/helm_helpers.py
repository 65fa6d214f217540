"""The chart and the testenv's own helm binary, with its state in the environment's folder."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from vaultbridge.testenv.env import Environment

CHART = Path(__file__).resolve().parents[2] / "charts" / "vaultbridge"


def helm(
    env: Environment, *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    home = env.workdir / "helm-home"
    home.mkdir(exist_ok=True)
    done = subprocess.run(
        [str(env.kube.bindir / "helm"), *args, "--kubeconfig", str(env.kube.kubeconfig)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={
            **os.environ,
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        },
        check=False,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done
