"""One long-lived librados connection to the mons, with a wall-clock deadline on every call.

The binding's own timeouts are not to be trusted (a call can block well past
``rados_mon_op_timeout``), so every blocking librados call runs in a daemon worker thread and the
caller waits at most ``timeout`` seconds for it. The worker is long-lived (a thread per call cost
~0.15 ms, three times per rotation). A call that misses its deadline abandons the worker and the
handle (the handle is shut down and the thread ends when the stuck call finally returns) and
raises :class:`CephUnavailable`; the next call connects afresh, in a new worker.

Commands are dicts; values may be :class:`Sensitive` and are revealed only while the JSON for
librados is built. Any revealed value is scrubbed from the mons' error text before it can reach
an exception message.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import rados

from vaultbridge.ceph.errors import (
    CephError,
    CephIdentityMismatch,
    CephPermissionDenied,
    CephRejected,
    CephUnavailable,
    errno_name,
    error_for_errno,
)
from vaultbridge.model.sensitive import REDACTED, Sensitive

__all__ = ["CephConnection"]

T = TypeVar("T")

_VERSION_RE = re.compile(r"ceph version (\d+)\.(\d+)\.(\d+)")


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def _encode_command(cmd: Mapping[str, Any], secrets: list[str]) -> str:
    """JSON for librados; Sensitive values are revealed here and remembered for scrubbing."""

    def reveal(value: object) -> object:
        if isinstance(value, Sensitive):
            secret = value.reveal()
            secrets.append(secret)
            return secret
        raise TypeError(f"cannot encode {type(value).__name__} in a mon command")

    return json.dumps(dict(cmd), default=reveal)


class CephConnection:
    """A thread-safe, lazily connected, self-healing librados handle for mon commands.

    ``keyring`` is a keyring file path (``None``: whatever ``conf`` says). ``key`` (a
    :class:`Sensitive` cephx key) authenticates with that key instead, passed to librados as the
    in-process conf option ``key`` -- never on a command line or in a file.

    ``conf`` None reads no file: ``options`` (``mon_host`` among them) say everything, as for
    a cluster read from Kubernetes objects; ``label`` then names it in errors. With
    ``expect_fsid``, a connection whose mons answer with another fsid is refused
    (:class:`CephIdentityMismatch`) before any command is sent.
    """

    def __init__(
        self,
        conf: str | None,
        user: str,
        keyring: str | None = None,
        timeout: float = 5.0,
        *,
        key: Sensitive | None = None,
        quiet: bool = False,
        options: Mapping[str, str] | None = None,
        label: str | None = None,
        expect_fsid: str | None = None,
    ) -> None:
        if "." not in user.strip("."):
            raise CephRejected(f"ceph user {user!r} must be a full entity name like client.admin")
        self.conf = None if conf is None else str(conf)
        self.user = user
        self.keyring = keyring
        self.timeout = float(timeout)
        self._key = key
        self._quiet = quiet
        self.options = dict(options or {})
        self.label = label
        self.expect_fsid = expect_fsid
        self._lock = threading.Lock()
        self._handle: rados.Rados | None = None
        self._worker: _Worker | None = None
        self._fsid: str | None = None  # what the current handle's mons answered with
        self.connections = 0  # handles connected so far: what is read once per connection

    # ------------------------------------------------------------------ plumbing
    def __repr__(self) -> str:
        return f"CephConnection(conf={self.conf!r}, user={self.user!r})"

    def __enter__(self) -> CephConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def where(self) -> str:
        return f"{self.user} via {self.label or self.conf}"

    def _rados_conf(self) -> dict[str, str]:
        seconds = str(max(1, round(self.timeout)))
        conf = {
            "client_mount_timeout": seconds,
            "rados_mon_op_timeout": seconds,
            "rados_osd_op_timeout": seconds,
        }
        conf.update(self.options)
        if self.keyring is not None:
            conf["keyring"] = self.keyring
        elif self.conf is None:  # no file, no default keyring search: only the key given
            conf["keyring"] = ""
        if self._quiet:
            conf["log_to_file"] = "false"
            conf["err_to_stderr"] = "false"
        return conf

    def _in_worker(self, fn: Callable[[], T], what: str, deadline: float) -> T:
        """Run ``fn`` in the worker thread; give up (and abandon the handle) at ``deadline``."""
        if self._worker is None:
            self._worker = _Worker(f"ceph-worker-{self.user}")
        call = _Call(fn, self._handle)
        self._worker.calls.put(call)
        if not call.done.wait(max(0.0, deadline - time.monotonic())):
            call.abandon()
            self._worker = None  # stuck in librados: the next call gets a new thread
            if self._handle is call.handle:
                self._handle = None
            raise CephUnavailable(
                f"{what}: no answer from the ceph mons within {self.timeout:g} s ({self.where})",
                errno=110,
            )
        if call.error is not None:
            raise call.error
        value: T = call.value
        return value

    def _connect(self, deadline: float) -> rados.Rados:
        if self._handle is not None:
            return self._handle
        try:
            handle = rados.Rados(conffile=self.conf, name=self.user, conf=self._rados_conf())
            if self._key is not None:
                handle.conf_set("key", self._key.reveal())
        except rados.Error as exc:
            raise CephRejected(
                f"connect: cannot load ceph configuration {self.conf} for {self.user}"
                f" ({type(exc).__name__})"
            ) from exc
        self._handle = handle
        seconds = max(1, round(self.timeout))
        try:
            self._in_worker(lambda: handle.connect(timeout=seconds), "connect", deadline)
        except CephError:
            raise
        except rados.Error as exc:
            self._handle = None
            _shutdown_quietly(handle)
            raise _translate(exc, f"connect as {self.user}", self.label or str(self.conf)) from exc
        try:
            fsid = str(self._in_worker(handle.get_fsid, "get fsid", deadline))
        except CephError:
            raise
        except rados.Error as exc:
            self._handle = None
            _shutdown_quietly(handle)
            raise _translate(exc, "get fsid", self.where) from exc
        if self.expect_fsid is not None and fsid != self.expect_fsid:
            self._handle = None
            _shutdown_quietly(handle)
            raise CephIdentityMismatch(
                f"connect: the mons answer as fsid {fsid}, but {self.label or self.conf} names "
                f"fsid {self.expect_fsid}; nothing was sent ({self.where})"
            )
        self._fsid = fsid
        self.connections += 1
        return handle

    # ------------------------------------------------------------------ public API
    def connect(self) -> None:
        """Connect now (otherwise the first command does). Raises a :class:`CephError`."""
        with self._lock:
            self._connect(time.monotonic() + self.timeout)

    def fsid(self) -> str:
        """The fsid the mons answer with (connects first if need be)."""
        with self._lock:
            self._connect(time.monotonic() + self.timeout)
            assert self._fsid is not None
            return self._fsid

    def sibling(self, user: str, key: Sensitive) -> CephConnection:
        """A new connection to the same mons as ``user`` with ``key`` only (no keyring)."""
        with self._lock:
            options, expect = dict(self.options), self.expect_fsid
        return CephConnection(
            self.conf,
            user,
            keyring="",
            timeout=self.timeout,
            key=key,
            quiet=True,
            options=options,
            label=self.label,
            expect_fsid=expect,
        )

    def known_fsid(self) -> str | None:
        """The fsid known without a request: the mons' answer on the current handle, else the
        one this connection is pinned to (None: neither)."""
        return self._fsid or self.expect_fsid

    def retarget(
        self,
        options: Mapping[str, str],
        *,
        key: Sensitive | None,
        user: str,
        expect_fsid: str | None,
    ) -> None:
        """Connect with these from the next command on (the mons moved, or the key or user
        changed). A command in progress finishes on the old handle first."""
        with self._lock:
            handle, self._handle = self._handle, None
            self.options, self._key, self.user = dict(options), key, user
            self.expect_fsid, self._fsid = expect_fsid, None
        if handle is not None:
            _shutdown_quietly(handle)

    def mon_command(
        self,
        cmd: Mapping[str, Any],
        inbuf: bytes = b"",
        target: str | None = None,
        *,
        secrets: tuple[Sensitive, ...] = (),
    ) -> bytes:
        """Send ``cmd`` (JSON output requested) to the mons, or to mon ``target``; return outbuf.

        A negative return code becomes :class:`CephPermissionDenied` (EACCES/EPERM),
        :class:`CephUnavailable` (timeouts, lost connection) or :class:`CephRejected`, with the
        command prefix and the mons' error text (scrubbed of any value in ``cmd``/``secrets``).
        """
        prefix = str(cmd.get("prefix", "?"))
        revealed = [s.reveal() for s in secrets]
        body = dict(cmd)
        body.setdefault("format", "json")
        encoded = _encode_command(body, revealed)
        where = self.where if target is None else f"{self.where}, mon.{target}"
        with self._lock:
            deadline = time.monotonic() + self.timeout
            handle = self._connect(deadline)

            def call() -> tuple[int, bytes, str]:
                if target is None:
                    answer = handle.mon_command(encoded, inbuf)
                else:
                    answer = handle.mon_command(encoded, inbuf, target=target)
                return (int(answer[0]), bytes(answer[1]), str(answer[2]))

            try:
                ret, out, errs = self._in_worker(call, f"mon command {prefix!r}", deadline)
            except CephError:
                raise
            except rados.Error as exc:
                if self._handle is handle:
                    self._handle = None
                _shutdown_quietly(handle)
                raise _translate(exc, f"mon command {prefix!r}", where) from exc
        if ret < 0:
            detail = _redact(errs.strip(), revealed)
            if inbuf:
                detail = _redact(detail, [inbuf.decode(errors="replace")])
            raise error_for_errno(
                ret,
                f"mon command {prefix!r} failed with {errno_name(ret)}"
                f"{': ' + detail if detail else ''} ({where})",
            )
        return out

    def mon_json(
        self,
        cmd: Mapping[str, Any],
        inbuf: bytes = b"",
        target: str | None = None,
    ) -> Any:
        """:meth:`mon_command` and parse the JSON answer."""
        out = self.mon_command(cmd, inbuf, target)
        try:
            return json.loads(out) if out.strip() else None
        except ValueError:
            raise CephRejected(
                f"mon command {cmd.get('prefix')!r}: answer is not JSON ({self.where})"
            ) from None

    def mon_versions(self) -> list[tuple[int, int, int]]:
        """Every version some mon reports (``versions``; several during an upgrade), as
        (major, minor, patch), lowest first."""
        try:
            report = self.mon_json({"prefix": "versions"})
            texts = list((report or {}).get("mon", {}))
        except CephRejected:
            texts = []
        if not texts:
            texts = [str((self.mon_json({"prefix": "version"}) or {}).get("version", ""))]
        found = [m for m in (_VERSION_RE.search(t) for t in texts) if m]
        if not found:
            raise CephRejected(f"versions: cannot parse the mons' version ({self.where})")
        return sorted({(int(m[1]), int(m[2]), int(m[3])) for m in found})

    def version(self) -> tuple[int, int, int]:
        """The lowest Ceph version any mon runs, as (major, minor, patch)."""
        return self.mon_versions()[0]

    def close(self) -> None:
        """Shut the librados handle down. The next command connects again."""
        with self._lock:
            handle, self._handle = self._handle, None
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.calls.put(None)
        if handle is not None:
            _shutdown_quietly(handle)


class _Call:
    """One librados call handed to the worker, and what came of it."""

    def __init__(self, fn: Callable[[], Any], handle: rados.Rados | None) -> None:
        self.fn = fn
        self.handle = handle
        self.value: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._abandoned = False

    def run(self) -> bool:
        """Run the call; whether its caller gave up on it (the worker then ends)."""
        try:
            self.value = self.fn()
        except BaseException as exc:
            self.error = exc
        with self._lock:
            self.done.set()
            abandoned = self._abandoned
        if abandoned and self.handle is not None:
            _shutdown_quietly(self.handle)
        return abandoned

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            finished = self.done.is_set()  # in the meantime: nobody else shuts it down
        if finished and self.handle is not None:
            _shutdown_quietly(self.handle)


class _Worker:
    """A daemon thread that runs one connection's librados calls, one at a time."""

    def __init__(self, name: str) -> None:
        self.calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def _serve(self) -> None:
        while (call := self.calls.get()) is not None:
            if call.run():
                return


def _translate(exc: rados.Error, what: str, where: str) -> CephError:
    code = getattr(exc, "errno", None)
    if isinstance(exc, rados.PermissionDeniedError | rados.PermissionError):
        return CephPermissionDenied(
            f"{what}: permission denied (cephx authentication or caps) ({where})", errno=13
        )
    if isinstance(exc, rados.TimedOut | rados.ConnectionShutdown | rados.NotConnected):
        return CephUnavailable(f"{what}: {type(exc).__name__} ({where})", errno=code)
    if isinstance(exc, rados.InvalidArgumentError):
        return CephRejected(f"{what}: invalid argument ({where})", errno=22)
    if isinstance(code, int) and code:
        return error_for_errno(code, f"{what}: {errno_name(code)} ({where})")
    return CephUnavailable(f"{what}: {type(exc).__name__} ({where})")


def _shutdown_quietly(handle: rados.Rados) -> None:
    with contextlib.suppress(Exception):  # best effort on an abandoned handle
        handle.shutdown()
