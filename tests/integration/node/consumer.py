"""A ceph-csi-like consumer, run in a Pod of the consumer image (Debian's python3-rados).

It holds a session with the key the mounted Secret holds (``/etc/ceph-csi``: ``userID`` and
``userKey``, the ceph-csi layout) and moves it when the files change, like a client that
reconnects on a new key. Every 200 ms it also authenticates a fresh connection with whatever
the files hold and runs ``mon stat`` on both. One JSON line per event on stdout: ``switch``
(new files seen, with a fingerprint, never the key), ``failure`` and, every 25 checks, ``tick``.
"""

import hashlib
import json
import sys
import time

import rados

FILES = "/etc/ceph-csi"
CONF = "/etc/ceph/ceph.conf"


def say(**fields):
    print(json.dumps({"t": time.time(), **fields}), flush=True)


def read():
    with open(f"{FILES}/userID") as f:
        user = f.read().strip()
    with open(f"{FILES}/userKey") as f:
        key = f.read().strip()
    return user, key


def connect(user, key):
    cluster = rados.Rados(
        conffile=CONF,
        name=f"client.{user}",
        conf={"key": key, "client_mount_timeout": "5", "rados_mon_op_timeout": "5"},
    )
    cluster.connect(timeout=5)
    return cluster


def check(cluster):
    ret, _out, err = cluster.mon_command(json.dumps({"prefix": "mon stat"}), b"", timeout=5)
    if ret != 0:
        raise RuntimeError(f"mon stat: {ret} {err[:100]}")


def main():
    held, held_fp = None, None
    checks = failures = 0
    while True:
        began = time.monotonic()
        try:
            user, key = read()
            fp = hashlib.sha256(f"{user}\n{key}".encode()).hexdigest()[:12]
            if fp != held_fp:
                new = connect(user, key)
                check(new)
                say(event="switch", user=user, fp=fp)
                if held is not None:
                    held.shutdown()
                held, held_fp = new, fp
            fresh = connect(user, key)
            try:
                check(fresh)
            finally:
                fresh.shutdown()
            check(held)
        except Exception as exc:  # every kind of failure counts; the message never holds a key
            failures += 1
            say(event="failure", error=f"{type(exc).__name__}: {str(exc)[:120]}")
        checks += 1
        if checks % 25 == 0:
            say(event="tick", checks=checks, failures=failures)
        time.sleep(max(0.0, 0.2 - (time.monotonic() - began)))


if __name__ == "__main__":
    sys.exit(main())
