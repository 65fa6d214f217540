"""What a Ceph cluster's mons run, read once per connection (``versions`` and ``mon dump``),
and what each release can do for vaultbridge: pending keys and AES256K keys."""

from __future__ import annotations

from dataclasses import dataclass

Version = tuple[int, int, int]

RELEASE_NAMES = {
    14: "nautilus",
    15: "octopus",
    16: "pacific",
    17: "quincy",
    18: "reef",
    19: "squid",
    20: "tentacle",
    21: "umbrella",
}

PENDING_KEYS_SINCE: Version = (17, 2, 6)


def release_name(major: int) -> str:
    return RELEASE_NAMES.get(major, f"release {major}")


def dotted(version: Version) -> str:
    return ".".join(str(part) for part in version)


@dataclass(frozen=True)
class MonRelease:
    """The versions the mons report, the monmap's ``min_mon_release``, and its ciphers.

    ``versions`` holds every version some mon reports (``ceph versions``); during an upgrade
    there are several. ``min_mon_release`` is the release every mon in the monmap must run at
    least: the mons raise it themselves once every mon of the monmap is in quorum on the new
    release, so until then it names the old one. None when the monmap does not say.
    """

    versions: tuple[Version, ...]
    min_mon_release: int | None = None
    preferred_key_type: str = "aes"
    allowed_key_types: tuple[str, ...] = ("aes",)

    @property
    def lowest(self) -> Version:
        return min(self.versions)

    @property
    def mixed(self) -> bool:
        return len(set(self.versions)) > 1

    def describe(self) -> str:
        """One phrase for messages: ``Ceph 18.2.7 (reef)``, or a mixed cluster's versions."""
        if not self.mixed:
            return f"Ceph {dotted(self.lowest)} ({release_name(self.lowest[0])})"
        shown = ", ".join(dotted(v) for v in sorted(set(self.versions)))
        floor = self.min_mon_release
        settled = f"; min_mon_release {release_name(floor)}" if floor is not None else ""
        return f"mons of mixed versions ({shown}{settled})"

    def pending_keys(self) -> bool:
        """Whether every mon can hold a pending key: each runs 17.2.6 or later and the monmap
        no longer admits an older mon (``min_mon_release`` quincy or later)."""
        floor = self.min_mon_release if self.min_mon_release is not None else self.lowest[0]
        return self.lowest >= PENDING_KEYS_SINCE and floor >= PENDING_KEYS_SINCE[0]

    def lacks_pending_keys(self) -> str:
        """Why :meth:`pending_keys` is False, as one phrase."""
        if self.lowest < PENDING_KEYS_SINCE:
            return (
                f"{self.describe()} has no pending keys (they need every mon at "
                f"{dotted(PENDING_KEYS_SINCE)} or later)"
            )
        return (
            f"{self.describe()}: min_mon_release is still "
            f"{release_name(self.min_mon_release or 0)}, so a mon without pending keys may "
            "still join"
        )
