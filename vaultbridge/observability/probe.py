"""A Kubernetes exec probe: GET ``/healthz`` or ``/readyz`` from this Pod's controller over its
Unix socket (``http.socket``), exit 0 on 200 and 1 otherwise, printing the answer.

For host-network Pods that share a port (``http.reuse_port``): an HTTP probe of the port could
be answered by another Pod's process. Standard library only, so that a probe starts fast::

    python -m vaultbridge.observability.probe /tmp/vaultbridge.sock /readyz
"""

from __future__ import annotations

import socket
import sys

PATHS = ("/healthz", "/readyz")


def probe(socket_path: str, path: str, timeout: float = 5.0) -> tuple[int, str]:
    """(HTTP status, body) of ``GET path`` on the socket; status 0 when it cannot be asked."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        try:
            conn.connect(socket_path)
            conn.sendall(f"GET {path} HTTP/1.0\r\nHost: probe\r\n\r\n".encode())
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        except OSError as exc:
            return 0, f"cannot reach the controller at {socket_path}: {exc.strerror or exc}"
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0, f"no HTTP answer from {socket_path}"
    return status, body.decode(errors="replace").strip()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in PATHS:
        print(f"usage: probe SOCKET {{{'|'.join(PATHS)}}}", file=sys.stderr)
        return 2
    status, body = probe(argv[0], argv[1])
    print(body if status else f"probe: {body}")
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
