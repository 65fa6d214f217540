"""The ``vaultbridge`` command line (the README's "Command line").

Every command prints one clear line on failure (never a traceback, never a secret) and exits
non-zero; tables take ``--output json``.
"""

from __future__ import annotations

import atexit
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import click
from tabulate import tabulate

import vaultbridge.app as application
from vaultbridge.engine.outcome import Outcome
from vaultbridge.model.errors import BackendError, PreconditionError
from vaultbridge.model.spec import CredentialRef, SpecError
from vaultbridge.observability.logging import configure_logging
from vaultbridge.settings import SettingsError, load_settings

F = TypeVar("F", bound=Callable[..., Any])

output_option = click.option(
    "--output",
    "-o",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Print a table for people or JSON for scripts.",
)


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"vaultbridge: {message}", err=True)
    sys.exit(code)


@contextmanager
def clear_errors() -> Iterator[None]:
    """Turn every expected failure into one line on stderr and a non-zero exit."""
    try:
        yield
    except SettingsError as exc:
        for problem in exc.problems:
            click.echo(f"vaultbridge: setting {problem}", err=True)
        sys.exit(2)
    except SpecError as exc:
        fail(str(exc))
    except (BackendError, PreconditionError) as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(str(exc), 2)


def parse_ref(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> CredentialRef | None:
    if value is None:
        return None
    try:
        return CredentialRef.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def rfc3339(value: Any) -> str:
    """``json.dumps`` default: times as Kubernetes writes them (``2026-12-01T22:15:31Z``)."""
    if isinstance(value, datetime):
        text = value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
        return text.replace("+00:00", "Z")
    return str(value)


def dump(value: Any) -> str:
    return json.dumps(value, indent=2, default=rfc3339)


def cli_log_level() -> str:
    """Warnings only, unless ``-v`` (INFO) or ``-vv`` (DEBUG) was given."""
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    verbose = int(obj.get("verbose", 0)) if isinstance(obj, dict) else 0
    return {0: "WARNING", 1: "INFO"}.get(verbose, "DEBUG")


def open_app(
    *, vault: bool = True, ceph: bool = True, log_level: str | None = None
) -> application.App:
    settings = load_settings()
    configure_logging(log_level or cli_log_level())
    app = application.build(settings, vault=vault, ceph=ceph)
    atexit.register(app.close)  # flushes queued Events before the process ends
    return app


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="vaultbridge")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Log more: -v for each step (INFO), -vv for DEBUG. Commands other than `run` log "
    "warnings only by default; `run` logs at VAULTBRIDGE_LOG_LEVEL (INFO).",
)
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """Keep Ceph credentials in step with Vault/OpenBao on Kubernetes.

    Settings come from VAULTBRIDGE_* environment variables (see README), e.g.
    VAULTBRIDGE_VAULT__ADDR, VAULTBRIDGE_KUBE__KUBECONFIG, VAULTBRIDGE_CEPH__CONF.
    """
    ctx.obj = {"verbose": verbose}


def print_outcome(outcome: Outcome, output: str) -> None:
    if output == "json":
        click.echo(
            json.dumps(
                {
                    "credential": str(outcome.ref),
                    "result": outcome.result,
                    "version": outcome.version,
                    "message": outcome.message,
                    "reason": outcome.reason,
                    "plan": outcome.plan,
                    "retryAfterSeconds": outcome.retry_after.total_seconds()
                    if outcome.retry_after
                    else None,
                },
                indent=2,
            )
        )
        return
    for number, line in enumerate(outcome.plan, 1):
        click.echo(f"  {number}. {line}")
    stream_is_err = not outcome.ok
    prefix = "" if outcome.ok else f"{outcome.result}: "
    reason = f" [{outcome.reason}]" if outcome.reason and not outcome.ok else ""
    click.echo(f"{prefix}{outcome.message}{reason}", err=stream_is_err)


def waiting_out_another_holder(app: application.App, run: Callable[[], Outcome]) -> Outcome:
    """``run()``, and again while another engine holds the credential's rotation in flight
    (until it finishes, or falls silent and may be taken over), for at most three times the
    takeover time."""
    deadline = time.monotonic() + 3 * app.settings.rotation.takeover_after
    outcome = run()
    while outcome.result == "in-flight" and outcome.retry_after is not None:
        wait = outcome.retry_after.total_seconds() + 0.2
        if time.monotonic() + wait > deadline:
            break
        click.echo(f"{outcome.message}; waiting {wait:.0f} s", err=True)
        time.sleep(wait)
        outcome = run()
    return outcome


@main.command()
@click.argument("credential", metavar="NS/NAME", callback=parse_ref)
@click.option(
    "--dry-run", is_flag=True, help="Precheck: read, validate and print the plan; change nothing."
)
@output_option
def sync(credential: CredentialRef, dry_run: bool, output: str) -> None:
    """Propagate the latest Vault version (or the Secret's edit) to Ceph now.

    Exits 0 only when the version is applied, verified and promoted (or, with --dry-run, when
    the plan is valid). A rotation of this credential in flight in another vaultbridge is
    waited for; one whose process has been silent for VAULTBRIDGE_ROTATION__TAKEOVER_AFTER
    seconds (default 30) is taken over and finished.
    """
    with clear_errors():
        app = open_app()
        outcome = waiting_out_another_holder(
            app, lambda: app.engine.sync(credential, dry_run=dry_run)
        )
    print_outcome(outcome, output)
    sys.exit(0 if outcome.ok else 1)


@main.command()
@click.argument("credential", metavar="NS/NAME", callback=parse_ref)
@click.option("--dry-run", is_flag=True, help="Precheck only: print the plan, change nothing.")
@output_option
def rotate(credential: CredentialRef, dry_run: bool, output: str) -> None:
    """A new credential now: generated into Vault when spec.generate, else the same as sync.

    A rotation in flight in another vaultbridge is waited for, as with sync.
    """
    with clear_errors():
        app = open_app()
        outcome = waiting_out_another_holder(
            app, lambda: app.engine.rotate(credential, dry_run=dry_run)
        )
    print_outcome(outcome, output)
    sys.exit(0 if outcome.ok else 1)


@main.command()
@click.argument("credential", metavar="NS/NAME", callback=parse_ref)
@click.option(
    "--to-version",
    type=click.IntRange(min=1),
    default=None,
    help="The Vault version to go back to (default: the previous verified one).",
)
@output_option
def rollback(credential: CredentialRef, to_version: int | None, output: str) -> None:
    """Go back to an earlier verified version (Ceph, the Secret and the Vault labels).

    A rotation in flight in another vaultbridge is waited for, as with sync.
    """
    with clear_errors():
        app = open_app()
        outcome = waiting_out_another_holder(
            app, lambda: app.engine.rollback(credential, to_version=to_version)
        )
    print_outcome(outcome, output)
    sys.exit(0 if outcome.ok else 1)


def _age(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    seconds = int((now - moment).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@main.command()
@click.argument("credential", metavar="[NS/NAME]", required=False, callback=parse_ref)
@output_option
def status(credential: CredentialRef | None, output: str) -> None:
    """Table of credentials: target, Ceph cluster, versions, age, phase, readiness,
    compliance."""
    with clear_errors():
        app = open_app(vault=False, ceph=False)
        rows = app.status_rows(credential)
    if output == "json":
        click.echo(dump(rows))
        return
    now = datetime.now(UTC)
    table = [
        [
            r["credential"],
            r["target"],
            r["cluster"],
            r["currentVersion"],
            r["previousVersion"],
            _age(r["lastRotationTime"], now),
            r["phase"],
            r["ready"],
            r["compliant"],
        ]
        for r in rows
    ]
    click.echo(
        tabulate(
            table,
            headers=[
                "CREDENTIAL",
                "TARGET",
                "CLUSTER",
                "CURRENT",
                "PREVIOUS",
                "AGE",
                "PHASE",
                "READY",
                "COMPLIANT",
            ],
        )
    )


@main.command()
@click.argument("credential", metavar="NS/NAME", callback=parse_ref)
@output_option
def history(credential: CredentialRef, output: str) -> None:
    """Past rotations of one credential, newest first."""
    with clear_errors():
        app = open_app(vault=False, ceph=False)
        entries = app.history_rows(credential)
    if output == "json":
        click.echo(dump(entries))
        return
    click.echo(
        tabulate(
            [
                [
                    e["rotationId"],
                    e["version"],
                    e["result"],
                    e["startedAt"],
                    e["finishedAt"],
                    e["reason"],
                ]
                for e in entries
            ],
            headers=["ROTATION", "VERSION", "RESULT", "STARTED", "FINISHED", "REASON"],
        )
    )


@main.command()
@output_option
def check(output: str) -> None:
    """Can vaultbridge reach Vault, Kubernetes and Ceph, and is it allowed to do its job?

    One Ceph row per cluster: the default (VAULTBRIDGE_CEPH__*), then each one a
    CredentialRotation's spec.cluster names, connected from the objects it names."""
    with clear_errors():
        settings = load_settings()
        configure_logging(cli_log_level())
        results = application.check(settings)
    if output == "json":
        click.echo(dump([r.__dict__ for r in results]))
    else:
        click.echo(
            tabulate(
                [[r.backend, "ok" if r.ok else "FAIL", r.detail] for r in results],
                headers=["BACKEND", "RESULT", "DETAIL"],
            )
        )
    sys.exit(0 if all(r.ok for r in results) else 1)


def report_rows(app: application.App, now: datetime) -> list[dict[str, Any]]:
    """One row per credential: the evidence an auditor asks for."""
    from vaultbridge.model.spec import parse_spec
    from vaultbridge.model.status import Status
    from vaultbridge.rotation import compliance

    rows = []
    for raw in app.credentials(None):
        metadata = raw["metadata"]
        status = Status.from_dict(raw.get("status"))
        row: dict[str, Any] = {
            "credential": f"{metadata['namespace']}/{metadata['name']}",
            "target": "invalid spec",
            "source": "",
            "currentVersion": status.current_version,
            "lastRotationTime": status.last_rotation_time,
            "lastVerifiedTime": status.last_verified_time,
            "ageSeconds": int((now - status.last_rotation_time).total_seconds())
            if status.last_rotation_time
            else None,
            "maxAge": None,
            "schedule": None,
            "compliant": "Unknown",
            "complianceReason": "InvalidSpec",
            "phase": str(status.phase),
        }
        try:
            spec = parse_spec(raw.get("spec") or {})
        except SpecError:
            rows.append(row)
            continue
        condition = compliance(status, spec.max_age, now, status.observed_generation)
        source = spec.source
        row.update(
            target=application.describe_target(spec),
            source=f"{source.mount}/{source.path}" if source else "secret",
            maxAge=_age(now - spec.max_age, now) if spec.max_age else None,
            schedule=spec.schedule,
            compliant=condition.status,
            complianceReason=condition.reason,
        )
        rows.append(row)
    return rows


@main.command()
@click.option(
    "--output",
    "-o",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="A table for people, JSON or CSV for the audit trail.",
)
def report(output: str) -> None:
    """Compliance report: each credential with target, versions, rotation times, age, compliance."""
    with clear_errors():
        app = open_app(vault=False, ceph=False)
        now = datetime.now(UTC)
        rows = report_rows(app, now)
    if output == "json":
        click.echo(dump(rows))
        return
    if output == "csv":
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["credential"])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else rfc3339(v)) for k, v in row.items()})
        click.echo(buffer.getvalue(), nl=False)
        return
    click.echo(
        tabulate(
            [
                [
                    r["credential"],
                    r["target"],
                    r["currentVersion"],
                    r["lastRotationTime"] or "-",
                    r["lastVerifiedTime"] or "-",
                    _age(r["lastRotationTime"], now),
                    r["maxAge"] or "-",
                    f"{r['compliant']} ({r['complianceReason']})",
                ]
                for r in rows
            ],
            headers=[
                "CREDENTIAL",
                "TARGET",
                "CURRENT",
                "LAST ROTATION",
                "LAST VERIFIED",
                "AGE",
                "MAX AGE",
                "COMPLIANT",
            ],
        )
    )


@main.command()
@click.argument("credential", metavar="NS/NAME", callback=parse_ref)
@click.option(
    "--keep-ceph",
    is_flag=True,
    help="Release the CredentialRotation without removing its cephx entities from Ceph.",
)
@output_option
def finalize(credential: CredentialRef, keep_ceph: bool, output: str) -> None:
    """Finish deleting a CredentialRotation that waits for vaultbridge.

    Only a cephx target with deletionPolicy: Delete waits (finalizer
    vaultbridge.io/cephx-cleanup) once deleted: a running controller removes its entities from
    Ceph, or this command does, when no mon lists a session for any of them. Exits 1 with the
    reason while one still does. --keep-ceph releases it at once and leaves Ceph as it is.
    """
    with clear_errors():
        app = open_app()
        outcome = app.engine.finalize(credential, remove=not keep_ceph)
    print_outcome(outcome, output)
    sys.exit(0 if outcome.ok else 1)


@main.command()
def run() -> None:
    """The controller: watch CredentialRotations and Secrets and reconcile them until stopped."""
    with clear_errors():
        from vaultbridge.controller import build_controller  # its imports: only for `run`

        settings = load_settings()
        configure_logging(settings.log_level or cli_log_level())
        build_controller(settings).run()


@main.command()
@click.option(
    "--mons",
    default=1,
    show_default=True,
    type=click.IntRange(1, 5),
    help="Ceph monitors to start.",
)
@click.option("--keep", is_flag=True, help="Leave the environment running afterwards.")
def demo(mons: int, keep: bool) -> None:
    """Start OpenBao, Ceph mons and a Kubernetes API on loopback and rotate a few credentials."""
    from vaultbridge.demo import run_demo

    with clear_errors():
        sys.exit(run_demo(mons=mons, keep=keep))


from vaultbridge.access_policies.command import policy_group  # noqa: E402 - `vaultbridge policy render`

main.add_command(policy_group)

if __name__ == "__main__":
    logging.basicConfig()
    main()
