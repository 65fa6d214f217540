"""A real Ceph monitor cluster (1 to 5 mons) on loopback ports, data in a work folder.

The release is Pacific (16) from the machine's packages, or Reef (18) or Tentacle (20) from a
cached Debian root filesystem (``vaultbridge.testenv.releases``).

No OSDs, no mgr: the mon databases (config, config-key, cephx auth) are all vaultbridge touches.
Every mon is a real ``ceph-mon -f`` process in its own session; "ready" means the ``ceph`` CLI
reports every started mon in quorum and ``health`` answers. This module does not import rados
(only ``vaultbridge.ceph`` does); it drives the Ceph command-line tools.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaultbridge.testenv.common import (
    TestenvError,
    free_port,
    log_tail,
    pid_alive,
    processes_mentioning,
    spawn,
    stop_pid,
    wait_until,
)
from vaultbridge.testenv.releases import INSIDE
from vaultbridge.testenv.releases import release as ceph_release

__all__ = ["CephCluster", "start_ceph"]

INSTALL_HINT = "apt-get install ceph-mon ceph-common python3-rados"
TOOLS = ("ceph-mon", "ceph", "ceph-authtool", "monmaptool")
MON_IDS = ("a", "b", "c", "d", "e")
READY_TIMEOUT = 60.0
CLI_TIMEOUT = 15.0


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise TestenvError(f"ceph: `{name}` not found on PATH; install it with: {INSTALL_HINT}")
    return path


def _require_free(port: int, what: str) -> None:
    """Fail when someone listens on ``port``; TIME_WAIT leftovers are fine (ceph-mon reuses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise TestenvError(f"{what}: port 127.0.0.1:{port} is busy ({exc.strerror})") from exc


def _clean_env() -> dict[str, str]:
    """The environment minus CEPH_ARGS/CEPH_CONF (``testenv/up``'s env.sh sets them for the
    ``ceph`` CLI; ``ceph-mon --mkfs`` would pick up ``--name client.admin`` from them)."""
    return {k: v for k, v in os.environ.items() if k not in {"CEPH_ARGS", "CEPH_CONF"}}


def _run(argv: list[str], what: str, timeout: float = CLI_TIMEOUT) -> str:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, env=_clean_env()
        )
    except subprocess.TimeoutExpired as exc:
        raise TestenvError(f"{what}: did not finish within {timeout:.0f} s") from exc
    if done.returncode != 0:
        err = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise TestenvError(f"{what}: exited {done.returncode}: {' | '.join(err)}")
    return done.stdout


def _addrvec(ports: tuple[int, int]) -> str:
    return f"[v2:127.0.0.1:{ports[0]},v1:127.0.0.1:{ports[1]}]"


@dataclass
class CephCluster:
    """A running mon cluster. ``to_dict``/``from_dict`` let another process stop it."""

    workdir: Path
    conf: Path
    admin_keyring: Path
    fsid: str
    mon_ids: list[str]
    mon_ports: dict[str, tuple[int, int]]  # mon id -> (msgr2 port, msgr1 port)
    pids: dict[str, int] = field(default_factory=dict)
    user: str = "client.admin"
    release: int = 16
    mon_releases: dict[str, int] = field(default_factory=dict)  # a mon upgraded on its own
    # mon id -> the (msgr2, msgr1) ports it binds when they differ from the ones the monmap
    # advertises (``--public-bind-addr``, as Rook runs mons behind a Service): a fault proxy
    # then listens on the advertised ones
    bind_ports: dict[str, tuple[int, int]] = field(default_factory=dict)
    _procs: dict[str, subprocess.Popen[bytes]] = field(
        default_factory=dict, repr=False, compare=False
    )

    # ----------------------------------------------------------------- addresses, CLI
    def command(self, *argv: str, release: int | None = None) -> list[str]:
        """``argv`` run with this cluster's release of the Ceph tools (or ``release``'s)."""
        chosen = ceph_release(release or self.release)
        if chosen.root is None:
            return [_tool(argv[0]), *argv[1:]]
        return chosen.command(argv, binds=[self.workdir])

    @property
    def mon_host(self) -> str:
        return ",".join(_addrvec(self.mon_ports[m]) for m in self.mon_ids)

    def env(self) -> dict[str, str]:
        """The VAULTBRIDGE_CEPH__* settings that point vaultbridge at this cluster."""
        return {
            "VAULTBRIDGE_CEPH__CONF": str(self.conf),
            "VAULTBRIDGE_CEPH__USER": self.user,
            "VAULTBRIDGE_CEPH__KEYRING": str(self.admin_keyring),
        }

    def ceph(self, *args: str, timeout: float = CLI_TIMEOUT) -> str:
        """Run the ``ceph`` CLI as client.admin against this cluster; stdout as text."""
        argv = self.command(
            "ceph",
            "-c",
            str(self.conf),
            "-n",
            self.user,
            "-k",
            str(self.admin_keyring),
            "--connect-timeout",
            str(int(timeout)),
            *args,
        )
        return _run(argv, f"ceph {' '.join(args[:2])}", timeout=timeout + 5)

    def quorum(self) -> list[str]:
        """Names of the mons in quorum right now (asks the cluster)."""
        status = json.loads(self.ceph("quorum_status", "--format", "json", timeout=5))
        return [str(name) for name in status.get("quorum_names", [])]

    def _log(self, mon_id: str) -> Path:
        return self.workdir / "log" / f"mon.{mon_id}.log"

    # ----------------------------------------------------------------- lifecycle
    def _wait_quorum(
        self,
        expected: list[str],
        proc: subprocess.Popen[bytes] | None = None,
        log: Path | None = None,
    ) -> None:
        want = set(expected)

        def ready() -> bool:
            if not want <= set(self.quorum()):
                return False
            self.ceph("health", "--format", "json", timeout=5)
            return True

        wait_until(
            ready,
            what=f"ceph mons {','.join(sorted(want))} (quorum)",
            timeout=READY_TIMEOUT,
            process=proc,
            log=log,
        )

    def _spawn_mon(self, mon_id: str) -> subprocess.Popen[bytes]:
        v2, v1 = self.bind_ports.get(mon_id) or self.mon_ports[mon_id]
        _require_free(v2, f"ceph mon.{mon_id} (msgr2)")
        _require_free(v1, f"ceph mon.{mon_id} (msgr1)")
        # ceph-mon takes one bind address, not a vector: msgr2 only (clients prefer it)
        bind = ["--public-bind-addr", f"v2:127.0.0.1:{v2}"] if mon_id in self.bind_ports else []
        proc = spawn(
            self.command(
                "ceph-mon",
                "-f",
                "-i",
                mon_id,
                "-c",
                str(self.conf),
                *bind,
                release=self.mon_releases.get(mon_id),
            ),
            log=self.workdir / "log" / f"mon.{mon_id}.stdout",
            env=_clean_env(),
        )
        self._procs[mon_id] = proc
        self.pids[mon_id] = proc.pid
        return proc

    def start_mon(self, mon_id: str, *, release: int | None = None) -> None:
        """(Re)start mon ``mon_id`` with its existing data; wait until it is back in quorum.

        ``release`` runs it from then on with that release's ``ceph-mon`` (an upgrade of this
        one mon: its store is converted as in a real upgrade, there is no way back)."""
        if release is not None and release != self.release:
            ceph_release(release).ensure()
            self.mon_releases[mon_id] = release
        if mon_id not in self.mon_ids:
            raise TestenvError(f"ceph: no mon {mon_id!r} in this cluster ({self.mon_ids})")
        if mon_id in self.pids and pid_alive(self.pids[mon_id]):
            raise TestenvError(f"ceph mon.{mon_id} is already running (pid {self.pids[mon_id]})")
        proc = self._spawn_mon(mon_id)
        running = [m for m in self.mon_ids if m in self.pids]
        self._wait_quorum(running, proc=proc, log=self._log(mon_id))

    def stop_mon(self, mon_id: str, *, kill: bool = False, wait_quorum: bool = True) -> None:
        """Stop one mon (SIGTERM, or SIGKILL with ``kill``) and wait until it is gone.

        With ``wait_quorum`` (and a majority still running), also wait until the remaining mons
        have formed a quorum without it.
        """
        pid = self.pids.pop(mon_id, None)
        proc = self._procs.pop(mon_id, None)
        if pid is None or not pid_alive(pid):
            # restarted by another process (a reused environment): find it by its arguments
            pid = self._find_mon_pid(mon_id)
            proc = None
        if pid is None:
            return
        if kill:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        stop_pid(pid)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        if pid_alive(pid):
            raise TestenvError(f"ceph mon.{mon_id} (pid {pid}) did not stop")
        running = [m for m in self.mon_ids if m in self.pids]
        if wait_quorum and running and 2 * len(running) > len(self.mon_ids):
            want = set(running)
            wait_until(
                lambda: set(self.quorum()) == want,
                what=f"ceph quorum {','.join(sorted(want))} after stopping mon.{mon_id}",
                timeout=READY_TIMEOUT,
            )

    def move_mon(self, mon_id: str, ports: tuple[int, int] | None = None) -> tuple[int, int]:
        """Give mon ``mon_id`` a new address, as when Rook fails a mon over to a new one: stop
        it, rewrite its monmap (``--extract-monmap``, ``monmaptool --rm`` and ``--addv``,
        ``--inject-monmap``), and start it on the new ports. One-mon clusters only (the other
        mons would still hold the old address). Returns the new (msgr2, msgr1) ports."""
        if self.mon_ids != [mon_id]:
            raise TestenvError(f"ceph: move_mon needs a one-mon cluster, not {self.mon_ids}")
        new = ports or _mon_ports([mon_id], None)[mon_id]
        self.stop_mon(mon_id, wait_quorum=False)
        monmap, conf = str(self.workdir / f"monmap.{mon_id}.moved"), str(self.conf)
        mon = ["ceph-mon", "-i", mon_id, "-c", conf]
        for argv, release in (
            ([*mon, "--extract-monmap", monmap], self.mon_releases.get(mon_id)),
            (["monmaptool", "--rm", mon_id, monmap], None),
            (["monmaptool", "--addv", mon_id, _addrvec(new), monmap], None),
            ([*mon, "--inject-monmap", monmap], self.mon_releases.get(mon_id)),
        ):
            _run(self.command(*argv, release=release), " ".join(argv[:3]))
        self.mon_ports[mon_id] = new
        _write_conf(self.conf, self.workdir, self.fsid, self.mon_host, self.admin_keyring)
        self.start_mon(mon_id)
        return new

    def _find_mon_pid(self, mon_id: str) -> int | None:
        for pid in processes_mentioning(str(self.conf)):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"-i" in argv and argv[argv.index(b"-i") + 1 : argv.index(b"-i") + 2] == [
                mon_id.encode()
            ]:
                return pid
        return None

    def stop(self) -> None:
        """Stop every mon by pid. Safe to call twice and from another process."""
        for mon_id in list(self.pids):
            self.stop_mon(mon_id, wait_quorum=False)

    # ----------------------------------------------------------------- state file
    def to_dict(self) -> dict[str, Any]:
        return {
            "workdir": str(self.workdir),
            "conf": str(self.conf),
            "admin_keyring": str(self.admin_keyring),
            "fsid": self.fsid,
            "mon_ids": list(self.mon_ids),
            "mon_ports": {m: list(p) for m, p in self.mon_ports.items()},
            "pids": dict(self.pids),
            "user": self.user,
            "release": self.release,
            "mon_releases": dict(self.mon_releases),
            "bind_ports": {m: list(p) for m, p in self.bind_ports.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CephCluster:
        return cls(
            workdir=Path(data["workdir"]),
            conf=Path(data["conf"]),
            admin_keyring=Path(data["admin_keyring"]),
            fsid=str(data["fsid"]),
            mon_ids=[str(m) for m in data["mon_ids"]],
            mon_ports={str(m): (int(p[0]), int(p[1])) for m, p in data["mon_ports"].items()},
            pids={str(m): int(p) for m, p in data.get("pids", {}).items()},
            user=str(data.get("user", "client.admin")),
            release=int(data.get("release", 16)),
            mon_releases={str(m): int(r) for m, r in data.get("mon_releases", {}).items()},
            bind_ports={
                str(m): (int(p[0]), int(p[1])) for m, p in data.get("bind_ports", {}).items()
            },
        )


def _write_conf(path: Path, workdir: Path, fsid: str, mon_host: str, keyring: Path) -> None:
    w = workdir
    path.write_text(
        f"""[global]
fsid = {fsid}
mon host = {mon_host}
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
mon warn on insecure global id reclaim allowed = false
mon warn on insecure global id reclaim = false
mon allow pool delete = true
mon warn on pool no redundancy = false
osd pool default size = 1
ms bind ipv6 = false
run dir = {w}/run
pid file = {w}/run/$name.pid
admin socket = {w}/run/$name.asok
log file = {w}/log/$name.log
crash dir = {w}/crash
mon data = {w}/mon/$cluster-$id
mon cluster log file = {w}/log/$cluster.log
# keep elections and lease expiry fast on loopback
mon lease = 1.0
mon election timeout = 1.0
mon probe timeout = 1.0
mon tick interval = 1
mon client hunt interval = 0.5
mon client ping timeout = 5

[mon]
debug mon = 1/5

[client]
keyring = {keyring}
log file = {w}/log/client.$pid.log
"""
    )


def start_ceph(
    workdir: Path,
    mons: int = 1,
    *,
    ports: list[tuple[int, int]] | None = None,
    release: int | None = None,
    bind_ports: list[tuple[int, int]] | None = None,
) -> CephCluster:
    """Create and start a cluster of ``mons`` monitors in ``workdir``; return when it is ready.

    ``ports`` optionally fixes each mon's (msgr2, msgr1) ports; by default free ones are picked.
    ``bind_ports`` makes each mon bind those instead of the advertised ``ports`` (something else,
    a fault proxy, must then forward the advertised ports to them before the mons start).
    ``release``: the Ceph major release (16, 18 or 20; the root filesystem of 18 and 20 is
    built first when it is missing); by default the release whose root this process runs in,
    else 16.

    Raises :class:`TestenvError` naming what failed (missing tool, busy port, a mon that exited
    or never formed quorum); anything already started is stopped first.
    """
    if not 1 <= mons <= len(MON_IDS):
        raise TestenvError(f"ceph: mons must be 1..{len(MON_IDS)}, not {mons}")
    if ports is not None and len(ports) != mons:
        raise TestenvError(f"ceph: {mons} mons need {mons} port pairs, got {len(ports)}")
    if bind_ports is not None and (ports is None or len(bind_ports) != mons):
        raise TestenvError(f"ceph: bind_ports needs ports, and {mons} pairs of each")
    if release is None:
        release = int(os.environ.get(INSIDE) or 16)
    chosen = ceph_release(release)
    if chosen.root is None:
        for name in TOOLS:
            _tool(name)
    else:
        chosen.ensure()
    workdir = Path(workdir).resolve()
    for sub in ("run", "log", "mon", "crash"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    mon_ids = list(MON_IDS[:mons])
    cluster = CephCluster(
        workdir=workdir,
        conf=workdir / "ceph.conf",
        admin_keyring=workdir / "ceph.client.admin.keyring",
        fsid=str(uuid.uuid4()),
        mon_ids=mon_ids,
        mon_ports=_mon_ports(mon_ids, ports, checked=bind_ports is None),
        release=release,
        bind_ports=dict(zip(mon_ids, bind_ports or [], strict=False)),
    )
    _write_conf(cluster.conf, workdir, cluster.fsid, cluster.mon_host, cluster.admin_keyring)
    mon_keyring = workdir / "ceph.mon.keyring"
    _make_keyrings(cluster, mon_keyring)
    _mkfs(cluster, mon_keyring)
    try:
        for mon_id in mon_ids:
            cluster._spawn_mon(mon_id)
        # fail early if any mon dies; the log of the first one is usually the telling one
        for mon_id in mon_ids:
            proc = cluster._procs[mon_id]
            if proc.poll() is not None:
                raise TestenvError(
                    f"ceph mon.{mon_id} exited with code {proc.returncode} at start"
                    f"{log_tail(cluster._log(mon_id))}"
                )
        deadline_proc = cluster._procs[mon_ids[0]]
        cluster._wait_quorum(mon_ids, proc=deadline_proc, log=cluster._log(mon_ids[0]))
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _mon_ports(
    mon_ids: list[str], ports: list[tuple[int, int]] | None, *, checked: bool = True
) -> dict[str, tuple[int, int]]:
    """Each mon's (msgr2, msgr1) ports: the given ones, else free ones; all checked free
    (unless not ``checked``: a proxy already listens on them)."""
    mon_ports: dict[str, tuple[int, int]] = {}
    taken: set[int] = set()
    for index, mon_id in enumerate(mon_ids):
        if ports is not None:
            mon_ports[mon_id] = ports[index]
            continue
        pair: list[int] = []
        while len(pair) < 2:
            port = free_port()
            if port not in taken:
                taken.add(port)
                pair.append(port)
        mon_ports[mon_id] = (pair[0], pair[1])
    for mon_id, (v2, v1) in mon_ports.items():
        if not checked:
            break
        _require_free(v2, f"ceph mon.{mon_id} (msgr2)")
        _require_free(v1, f"ceph mon.{mon_id} (msgr1)")
    return mon_ports


def _make_keyrings(cluster: CephCluster, mon_keyring: Path) -> None:
    """The ``mon.`` keyring, and ``client.admin``'s (caps ``allow *``) imported into it."""
    admin_keyring = cluster.admin_keyring
    create = ["ceph-authtool", "--create-keyring"]
    _run(
        cluster.command(
            *create, str(mon_keyring), "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"
        ),
        "ceph mon. keyring",
    )
    caps = [
        arg for service in ("mon", "osd", "mds", "mgr") for arg in ("--cap", service, "allow *")
    ]
    _run(
        cluster.command(*create, str(admin_keyring), "--gen-key", "-n", "client.admin", *caps),
        "ceph client.admin keyring",
    )
    admin_keyring.chmod(0o600)
    _run(
        cluster.command("ceph-authtool", str(mon_keyring), "--import-keyring", str(admin_keyring)),
        "ceph import admin key",
    )


def _mkfs(cluster: CephCluster, mon_keyring: Path) -> None:
    """The monmap of every mon, and each mon's store made from it."""
    monmap = cluster.workdir / "monmap"
    argv = ["monmaptool", "--create", "--clobber", "--fsid", cluster.fsid]
    for mon_id in cluster.mon_ids:
        argv += ["--addv", mon_id, _addrvec(cluster.mon_ports[mon_id])]
    _run(cluster.command(*argv, str(monmap)), "ceph monmaptool")
    for mon_id in cluster.mon_ids:
        _run(
            cluster.command(
                "ceph-mon",
                "--mkfs",
                "-i",
                mon_id,
                "--monmap",
                str(monmap),
                "--keyring",
                str(mon_keyring),
                "-c",
                str(cluster.conf),
            ),
            f"ceph-mon --mkfs mon.{mon_id}",
            timeout=60,
        )


def main() -> None:  # pragma: no cover - manual timing helper
    import sys
    import tempfile

    for n in (1, 3):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.monotonic()
            c = start_ceph(Path(tmp), mons=n)
            print(f"{n} mon(s) ready in {time.monotonic() - t0:.2f} s", file=sys.stderr)
            c.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
