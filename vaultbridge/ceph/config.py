"""The mon configuration database (``ceph config``): exact reads, verified writes, all-or-nothing.

Reads use ``config dump`` and pick the entry whose section is exactly ``who`` (no mask):
``config get`` appends a newline and falls back to defaults, so it cannot tell "absent" from
"set to the default". Every write is read back; a write that timed out is read back before it is
retried (it may have landed).
"""

from __future__ import annotations

import errno

from vaultbridge.ceph.connection import CephConnection
from vaultbridge.ceph.errors import CephError, CephPermissionDenied, CephRejected, CephUnavailable
from vaultbridge.model.sensitive import Sensitive

__all__ = ["ConfigStore", "Entry", "Snapshot"]

Entry = tuple[str, str]  # (who, option)
Snapshot = dict[Entry, Sensitive | None]

_REASONS = {
    "unrecognized config option": "unrecognized option",
    "unrecognized config target": "unrecognized target (who)",
    "error parsing value": "the value does not parse for this option",
}


def _reason(exc: CephError) -> str:
    text = exc.message
    for needle, reason in _REASONS.items():
        if needle in text:
            return reason
    return text


class ConfigStore:
    """``config set/rm/dump`` for credential options such as ``rgw_keystone_admin_password``."""

    def __init__(self, conn: CephConnection, *, write_attempts: int = 2) -> None:
        self.conn = conn
        self.write_attempts = max(1, write_attempts)
        self._fast: bool | None = None  # may get_fast use config-key? None: not known yet

    # ------------------------------------------------------------------ reads
    def dump(self) -> dict[Entry, Sensitive]:
        """Every unmasked option in the mon config database, keyed by (section, name)."""
        rows = self.conn.mon_json({"prefix": "config dump"})
        if not isinstance(rows, list):
            raise CephRejected(f"config dump: unexpected answer ({self.conn.where})")
        found: dict[Entry, Sensitive] = {}
        for row in rows:
            if isinstance(row, dict) and not row.get("mask"):
                found[(str(row.get("section")), str(row.get("name")))] = Sensitive(
                    str(row.get("value", ""))
                )
        return found

    def get(self, who: str, option: str) -> Sensitive | None:
        """The exact stored value of ``option`` for section ``who``; ``None`` when absent."""
        return self.dump().get((who, option))

    def get_fast(self, who: str, option: str) -> Sensitive | None:
        """Like :meth:`get`, in O(1) instead of a ``config dump`` of the whole database.

        The mons keep each option of the config database under the config-key
        ``config/<who>/<option>``. That is their internal layout, so it is trusted only after
        it agreed with ``config dump`` on a value that was present; until then, and for good
        once it disagreed or the caps refuse ``config-key get``, this is :meth:`get`.
        """
        if self._fast is False:
            return self.get(who, option)
        try:
            fast = self._config_key(who, option)
        except CephPermissionDenied:
            self._fast = False
            return self.get(who, option)
        if self._fast is True:
            return fast
        exact = self.get(who, option)
        if exact is not None:
            self._fast = fast == exact
        elif fast is not None:
            self._fast = False
        return exact

    def _config_key(self, who: str, option: str) -> Sensitive | None:
        try:
            out = self.conn.mon_command(
                {"prefix": "config-key get", "key": f"config/{who}/{option}"}
            )
        except CephRejected as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        return Sensitive(out.decode("utf-8", errors="surrogateescape"))

    def snapshot(self, entries: list[Entry]) -> Snapshot:
        """Current values (``None`` = absent) of ``entries``, from one ``config dump``."""
        current = self.dump()
        return {(who, option): current.get((who, option)) for who, option in entries}

    # ------------------------------------------------------------------ writes
    def set(self, who: str, option: str, value: Sensitive) -> None:
        """Store ``value`` and read it back exactly; skip when it is already there."""
        self._set(who, option, value, self.get(who, option))

    def _set(
        self,
        who: str,
        option: str,
        value: Sensitive,
        current: Sensitive | None,
        *,
        read_back: bool = True,
    ) -> None:
        if current is not None and current == value:
            return
        what = f"config set {who}/{option}"
        for attempt in range(1, self.write_attempts + 1):
            try:
                self.conn.mon_command(
                    {"prefix": "config set", "who": who, "name": option, "value": value}
                )
                break
            except CephUnavailable:
                # the write may have landed: read back before retrying
                if self._read_back_matches(who, option, value):
                    return
                if attempt == self.write_attempts:
                    raise
            except CephError as exc:
                raise type(exc)(f"{what}: {_reason(exc)}", errno=exc.errno) from exc
        if not read_back:
            return
        stored = self.get(who, option)
        if stored is None or stored != value:
            raise CephRejected(f"{what}: read-back via config dump differs from the value written")

    def _read_back_matches(self, who: str, option: str, value: Sensitive | None) -> bool:
        try:
            stored = self.get(who, option)
        except CephUnavailable:
            return False
        return stored == value if value is not None else stored is None

    def remove(self, who: str, option: str) -> None:
        """``config rm``; absent already is fine. Verified by reading back."""
        what = f"config rm {who}/{option}"
        for attempt in range(1, self.write_attempts + 1):
            try:
                self.conn.mon_command({"prefix": "config rm", "who": who, "name": option})
                break
            except CephUnavailable:
                if self._read_back_matches(who, option, None):
                    return
                if attempt == self.write_attempts:
                    raise
            except CephError as exc:
                raise type(exc)(f"{what}: {_reason(exc)}", errno=exc.errno) from exc
        if self.get(who, option) is not None:
            raise CephRejected(f"{what}: the option is still present after removal")

    def restore(self, snapshot: Snapshot) -> None:
        """Put every entry back as in ``snapshot`` (``None``: remove). Tries every entry, then
        raises the first failure, noting which entries could not be restored."""
        current = self.dump()
        failures: list[tuple[Entry, CephError]] = []
        for (who, option), wanted in snapshot.items():
            now = current.get((who, option))
            try:
                if wanted is None:
                    if now is not None:
                        self.remove(who, option)
                elif now is None or now != wanted:
                    self._set(who, option, wanted, now)
            except CephError as exc:
                failures.append(((who, option), exc))
        if failures:
            first = failures[0][1]
            names = ", ".join(f"{w}/{o}" for (w, o), _ in failures)
            first.add_note(f"config restore incomplete for: {names}")
            raise first

    def apply_all(
        self,
        values: list[tuple[str, str, Sensitive]],
        *,
        before: Snapshot | None = None,
        read_back: bool = True,
    ) -> None:
        """Set every (who, option, value) or none: on any failure restore what was written
        (set back, or removed when it was absent) and re-raise the failure.

        ``before``: the values just read by the caller (saves a ``config dump``);
        ``read_back=False`` when the caller verifies the result itself right after."""
        entries = [(who, option) for who, option, _ in values]
        if len(set(entries)) != len(entries):
            raise CephRejected("config apply: the same who/option appears twice")
        if before is None or any(entry not in before for entry in entries):
            before = self.snapshot(entries)
        touched: list[Entry] = []
        try:
            for who, option, value in values:
                touched.append((who, option))
                self._set(who, option, value, before[(who, option)], read_back=read_back)
        except BaseException as exc:
            try:
                self.restore({entry: before[entry] for entry in touched})
            except CephError as undo:
                exc.add_note(f"rollback failed: {undo}")
            raise
