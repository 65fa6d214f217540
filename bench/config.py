"""Config credentials rotated end to end, against the way Rook applies cephConfigFromSecret.

vaultbridge path, per credential: Vault version N+1 -> journal -> snapshot -> ``config set`` ->
exact read-back via ``config dump`` -> Secret + Vault labels -> status (``Engine.sync``). One
engine does every rotation, as the controller does: it claims from its copy of the CR (the
object its last status write returned). A sample is also run with the CR and the Secret read
first, as a one-shot ``vaultbridge sync`` does.

Rook path, per credential (what Rook's operator runs for cephConfigFromSecret today): write the
section to a file, ``ceph config assimilate-conf``, ``ceph config rm`` for the keys it skipped
because they already held another value, and a second ``assimilate-conf`` — three ``ceph`` CLI
process starts. Run on a sample (``--rook-sample``) since each takes ~0.5 s; the ratio compares
per-credential times from the same run and environment.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import hvac
from kubernetes import client as k8s
from kubernetes import config as k8s_config

import vaultbridge.app as application
from vaultbridge.model.spec import CredentialRef
from vaultbridge.settings import load_settings
from vaultbridge.testenv.env import Environment

OPTION = "rgw_keystone_admin_password"
FRESH_SAMPLE = 200
"""Credentials rotated with fresh reads of the CR and the Secret (the one-shot CLI's way)."""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summary(name: str, seconds: list[float], wall: float) -> dict[str, Any]:
    ms = [s * 1000 for s in seconds]
    return {
        "name": name,
        "count": len(ms),
        "wall_s": round(wall, 2),
        "p50_ms": round(statistics.median(ms), 1),
        "p99_ms": round(percentile(ms, 0.99), 1),
        "mean_ms": round(statistics.fmean(ms), 1),
    }


def server_processes(env: Environment) -> dict[str, int]:
    """Every process a rotation costs CPU in: the servers, and this one (vaultbridge)."""
    return {
        "openbao": env.vault.pid,
        **{f"mon.{name}": pid for name, pid in env.ceph.pids.items()},
        **env.kube.pids,
        "vaultbridge": os.getpid(),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def setup(env: Environment, count: int, ns: str, log: Callable[[str], None]) -> hvac.Client:
    api = k8s_config.new_client_from_config(config_file=str(env.kube.kubeconfig))
    k8s.CoreV1Api(api).create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
    vault = hvac.Client(url=env.vault.addr, token=env.vault.token)
    custom = k8s.CustomObjectsApi(api)
    for i in range(count):
        vault.secrets.kv.v2.create_or_update_secret(
            path=f"bench/{ns}/c{i}", secret={"value": f"initial-{i}"}, mount_point="secret"
        )
        custom.create_namespaced_custom_object(
            "vaultbridge.io",
            "v1alpha1",
            ns,
            "credentialrotations",
            {
                "apiVersion": "vaultbridge.io/v1alpha1",
                "kind": "CredentialRotation",
                "metadata": {"name": f"c{i}"},
                "spec": {
                    "source": {"mount": "secret", "path": f"bench/{ns}/c{i}"},
                    "secret": {"name": f"c{i}"},
                    "target": {"config": {"who": f"client.rgw.{ns}-{i}", "option": OPTION}},
                },
            },
        )
    log(f"created {count} Vault paths and CredentialRotations in namespace {ns}")
    return vault


def run(
    env: Environment,
    count: int,
    rook_sample: int,
    log: Callable[[str], None],
    workers: int = 8,
) -> dict[str, Any]:
    ns = f"bench-{int(time.time())}"
    vault = setup(env, count, ns, log)
    for key, value in env.variables().items():
        if key.startswith("VAULTBRIDGE_"):
            os.environ[key] = value
    app = application.build(load_settings())
    refs = [CredentialRef(ns, f"c{i}") for i in range(count)]
    began = time.monotonic()
    for ref in refs:  # first sync: every Secret created, every option set (not measured)
        outcome = app.engine.sync(ref)
        assert outcome.result == "promoted", outcome
    log(f"initial sync of {count} credentials: {time.monotonic() - began:.1f} s")

    def new_versions(refs: list[CredentialRef], label: str) -> None:
        """A new Vault version for each of ``refs`` (their credentials are c0, c1, ...)."""
        for i in range(len(refs)):
            vault.secrets.kv.v2.create_or_update_secret(
                path=f"bench/{ns}/c{i}",
                secret={"value": f"{label}-{i}-{os.urandom(8).hex()}"},
                mount_point="secret",
            )

    def timed_sync(ref: CredentialRef, durations: list[float], fresh: bool = False) -> None:
        if fresh:
            app.engine.forget(ref)
        start = time.perf_counter()
        outcome = app.engine.sync(ref)
        durations.append(time.perf_counter() - start)
        assert outcome.result == "promoted", outcome

    processes = server_processes(env)

    def measured(
        name: str, label: str, refs: list[CredentialRef], pool_size: int = 1, fresh: bool = False
    ) -> dict[str, Any]:
        """Rotate ``refs`` to a new version (``pool_size`` at a time) and time each sync; also
        the CPU each process spent per rotation meanwhile."""
        new_versions(refs, label)
        durations: list[float] = []
        time.sleep(0.5)  # let the Vault writes' aftermath settle out of the CPU figures
        before = {proc: cpu_seconds(pid) for proc, pid in processes.items()}
        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=pool_size) as pool:
            list(pool.map(lambda ref: timed_sync(ref, durations, fresh), refs))
        result = summary(name, durations, time.monotonic() - began)
        time.sleep(0.5)  # the last Events and watch updates
        result["cpu_ms_per_rotation"] = {
            proc: round((cpu_seconds(pid) - before[proc]) * 1000 / len(refs), 1)
            for proc, pid in processes.items()
        }
        result["cpu_ms_per_rotation"]["all"] = round(sum(result["cpu_ms_per_rotation"].values()), 1)
        return result

    ours = measured("vaultbridge sync (Vault -> Ceph -> verify -> Secret -> labels)", "seq", refs)
    log(f"vaultbridge: {ours}")
    # the same, with the CR and the Secret read before each rotation, as a one-shot
    # `vaultbridge sync` does (the engine forgets its copies first); on a sample
    fresh = measured(
        "vaultbridge sync, CR and Secret read first (as a one-shot CLI sync)",
        "fresh",
        refs[: min(count, FRESH_SAMPLE)],
        fresh=True,
    )
    log(f"vaultbridge, fresh reads: {fresh}")
    # the same again with a worker pool, as the controller runs them (one per credential)
    concurrent = measured(f"vaultbridge sync, {workers} workers", "parallel", refs, workers)
    log(f"vaultbridge concurrent: {concurrent}")

    rook = rook_path(env, ns, min(rook_sample, count), log)
    # a config change costs the mon CPU in proportion to the size of its config db (11 ms per
    # rotation at 1,000 options, 30 at 4,000): leave a reused environment as it was
    for i in range(count):
        app.engine.ceph.conn.mon_command(
            {"prefix": "config rm", "who": f"client.rgw.{ns}-{i}", "name": OPTION}
        )
    app.close()
    ratio = rook["mean_ms"] / ours["mean_ms"]
    projected = rook["mean_ms"] * count / 1000
    return {
        "vaultbridge": ours,
        "vaultbridge_fresh_reads": fresh,
        "vaultbridge_concurrent": concurrent,
        "rook_cli": rook,
        "rook_projected_wall_s_for_all": round(projected, 1),
        "speedup_per_credential": round(ratio, 1),
        "speedup_wall_sequential": round(projected / ours["wall_s"], 1),
        "speedup_wall_concurrent": round(projected / concurrent["wall_s"], 1),
    }


def rook_path(env: Environment, ns: str, sample: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Apply changed values the way Rook does: assimilate, rm skipped, assimilate again."""
    ceph_env = {
        **os.environ,
        "CEPH_CONF": str(env.ceph.conf),
        "CEPH_ARGS": f"--keyring {env.ceph.admin_keyring} --name {env.ceph.user}",
    }
    durations = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vb-bench-rook-") as tmp:
        conf = Path(tmp) / "section.conf"
        for i in range(sample):
            section = f"client.rgw.{ns}-{i}"
            value = f"rook-{i}-{os.urandom(8).hex()}"
            start = time.perf_counter()
            conf.write_text(f"[{section}]\n{OPTION} = {value}\n")
            first = subprocess.run(
                ["ceph", "config", "assimilate-conf", "-i", str(conf)],
                capture_output=True,
                text=True,
                env=ceph_env,
                check=True,
            )
            # what assimilate-conf could not set comes back as the "remaining" conf
            if OPTION in first.stdout:
                subprocess.run(
                    ["ceph", "config", "rm", section, OPTION],
                    capture_output=True,
                    env=ceph_env,
                    check=True,
                )
                subprocess.run(
                    ["ceph", "config", "assimilate-conf", "-i", str(conf)],
                    capture_output=True,
                    env=ceph_env,
                    check=True,
                )
            durations.append(time.perf_counter() - start)
            dump = subprocess.run(
                ["ceph", "config", "get", section, OPTION],
                capture_output=True,
                text=True,
                env=ceph_env,
                check=True,
            ).stdout.strip()
            assert dump == value, f"Rook path did not apply {section}"
    result = summary(
        "Rook cephConfigFromSecret path (ceph CLI: assimilate-conf, rm, assimilate)",
        durations,
        time.monotonic() - began,
    )
    log(f"rook: {result}")
    return result
