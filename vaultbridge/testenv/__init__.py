"""Real OpenBao, Ceph monitors and a Kubernetes API server on loopback.

Used by the test suite, by ``testenv/up``/``testenv/down`` and by ``vaultbridge demo``. Every
server is the real thing (OpenBao from PyPI, Ceph from Debian, Kubernetes built from Go modules);
nothing here fakes a protocol. Each server runs on free loopback ports with its data in a temp
folder, is "ready" only after it answered a real request, and is stopped by pid.
"""
