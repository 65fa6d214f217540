"""``vaultbridge run``: the controller that keeps every CredentialRotation reconciled.

One process per replica. Each runs the HTTP server (``/metrics``, ``/healthz``, ``/readyz``,
``POST /v1/trigger``, ``POST /v1/schedules/run``) and a leader-election loop on a Lease; only
the leader acts. While leading it

- lists and watches CredentialRotations and the Secrets it manages (bookmarks; a relist on 410
  Gone), keeping an index of specs and statuses, and reconciles every CR once on start (which
  also resumes journaled rotations left by a crashed leader);
- runs one APScheduler job per ``spec.schedule`` (``Engine.rotate``), polls Vault KV metadata,
  watches the Vault Agent file, and accepts webhook triggers;
- feeds all of that into one work queue keyed by credential: one reconcile in flight per
  credential, ``max_concurrent_rotations`` workers, a minimum interval between rotations of one
  credential, and failures retried after the engine's capped, jittered backoff.

Losing the Lease stops everything at once: waiting work is dropped, and a rotation in flight is
interrupted before its next step (the engine has journaled it; the next leader resumes it).

Its parts, one job each:

- ``controller/controller.py``: the wiring, started and stopped with each term;
- ``controller/leadership.py``: the Lease, and the term (epoch) everything runs in;
- ``controller/index.py``: what is known of every CR, and which CR a Secret belongs to;
- ``controller/watches.py``: the CR and managed-Secret watches;
- ``controller/work.py``: the workers on the work queue (backoff, metrics);
- ``controller/triggers.py``: schedules, the poller, the Agent file and the webhook;
- ``controller/http.py``: ``/metrics``, ``/healthz``, ``/readyz`` and the webhook's routes;
- ``controller/memory.py``: glibc's malloc arenas limited, and trimmed after a burst of work;
- ``controller/sweep.py``: the drift sweep, and a term's catch-up with Vault.
"""

from vaultbridge.controller.controller import Controller, build_controller

__all__ = ["Controller", "build_controller"]
