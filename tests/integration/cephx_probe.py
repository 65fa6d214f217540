"""Consumer probe: a separate process that behaves like a ceph-csi client during rotations.

Every 200 ms it re-reads the Secret (ceph-csi layout) and authenticates a fresh librados
connection with whatever it holds, then runs ``mon stat``. It stops when the file named by
argv[3] exists and prints one JSON line: attempts, failures, distinct entities seen, errors.
Usage: python cephx_probe.py NAMESPACE SECRET STOPFILE (KUBECONFIG, CEPH_CONF in the env).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from vaultbridge.ceph import CephConnection, CephError
from vaultbridge.model.sensitive import Sensitive


def main() -> None:
    namespace, name, stop = sys.argv[1:4]
    api = k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=os.environ["KUBECONFIG"]))
    conf = os.environ["CEPH_CONF"]
    attempts = failures = 0
    seen: set[str] = set()
    errors: list[str] = []
    while not os.path.exists(stop):
        started = time.monotonic()
        secret = api.read_namespaced_secret(name, namespace)
        data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        entity = "client." + data["userID"]
        seen.add(entity)
        conn = CephConnection(
            conf, entity, keyring="", timeout=5, key=Sensitive(data["userKey"]), quiet=True
        )
        attempts += 1
        try:
            conn.mon_command({"prefix": "mon stat"})
        except CephError as exc:
            failures += 1
            errors.append(f"{entity}: {exc}")
        finally:
            conn.close()
        time.sleep(max(0.0, 0.2 - (time.monotonic() - started)))
    print(
        json.dumps(
            {
                "attempts": attempts,
                "failures": failures,
                "entities": sorted(seen),
                "errors": errors[:5],
            }
        )
    )


if __name__ == "__main__":
    main()
