"""Fault points for crash tests: make a rotation stop dead after a chosen action.

``VAULTBRIDGE_FAULT=hang-after:Apply`` blocks the process forever right after the Apply action
succeeded (a test then ``kill -9``s it); ``crash-after:Verify`` SIGKILLs the process itself at
that point; ``pause-after:Apply`` sleeps one second there (a slow mon, as a test sees it),
``pause-after:Apply:4`` four seconds. ``stretch:Apply:0.5`` sleeps half a second before the
action and half a second after it, announcing itself first: the crash matrix kills the process
at a random moment of the stretched step. ``pause-before:Apply:3`` sleeps 3 s after the
engine checked that it may still act and before the action: the one-command window a stalled
holder's late write comes through.
Unset in production: the check is one dictionary lookup per action.

In-process tests may also register a hook (:func:`add_hook`) that is called before and after
every action, with ``("before", action)`` or ``("after", action)``: the fault-injection suite
switches a network fault on at a chosen step that way. No hook is registered outside tests.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable

VARIABLE = "VAULTBRIDGE_FAULT"

Hook = Callable[[str, str], None]
_hooks: list[Hook] = []


def add_hook(hook: Hook) -> None:
    _hooks.append(hook)


def remove_hook(hook: Hook) -> None:
    if hook in _hooks:
        _hooks.remove(hook)


def before(action: str) -> None:
    """Called by the engine before it performs ``action``."""
    for hook in list(_hooks):
        hook("before", action)
    seconds = _stretch(action)
    if seconds:
        print(f"vaultbridge: fault point stretch:{action} reached", file=sys.stderr, flush=True)
        time.sleep(seconds)


def acting(action: str) -> None:
    """Called by the engine once it checked that it may still act, just before ``action``."""
    spec = os.environ.get(VARIABLE)
    if not spec or not spec.startswith("pause-before:"):
        return
    _, where, seconds = [*spec.split(":"), "", ""][:3]
    if where.lower() == action.lower():
        print(f"vaultbridge: fault point {spec} reached", file=sys.stderr, flush=True)
        time.sleep(float(seconds or 1.0))


def _stretch(action: str) -> float:
    spec = os.environ.get(VARIABLE)
    if not spec or not spec.startswith("stretch:"):
        return 0.0
    _, where, seconds = [*spec.split(":"), "", ""][:3]
    return float(seconds or 0.5) if where.lower() == action.lower() else 0.0


def after(action: str) -> None:
    """Called by the engine after ``action`` succeeded."""
    for hook in list(_hooks):
        hook("after", action)
    stretched = _stretch(action)
    if stretched:
        time.sleep(stretched)
        return
    spec = os.environ.get(VARIABLE)
    if not spec:
        return
    mode, _, where = spec.partition(":")
    where, _, seconds = where.partition(":")
    if where.lower() != action.lower():
        return
    print(f"vaultbridge: fault point {spec} reached", file=sys.stderr, flush=True)
    if mode == "crash-after":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "hang-after":
        threading.Event().wait()
    if mode == "pause-after":
        time.sleep(float(seconds or 1.0))
