"""``knhk preflight``: the seed's 28-item pre-deployment checklist, checked by machine wherever a machine can
check it against the configured deployment (the settings this command runs with: ``KNHK_*``), as a table or
JSON. Items that need a person are listed as manual. Exit 0 when no check failed, 1 when one did, 2 on bad
usage. A check that cannot decide fails."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from knhk.app.preflight import DATABASE_CHECKS, OTHER_CHECKS, deployment_checks
from knhk.cli.context import state
from knhk.cli.output import print_json, say, table
from knhk.config import Settings
from knhk.errors import UsageError
from knhk.ops.preflight import (
    Check,
    Report,
    certificate_days_left,
    failed,
    not_applicable,
    passed,
    probe_tls13_only,
    promtool_problem,
    smoke_problems,
)

CHECK_IDS = (*DATABASE_CHECKS, *OTHER_CHECKS, "tls", "alert-rules", "telemetry", "smoke")


def tls_check(settings: Settings, base_url: str | None, min_days: float) -> Check:
    """TLS 1.3 only, a certificate valid for at least ``min_days``, and (with an https base URL) a live
    handshake: TLS 1.3 accepted, TLS 1.2 refused."""
    from knhk.service.tls import ssl_context_from_settings, tls_enabled

    title = "TLS 1.3 enforced"
    try:
        if not tls_enabled(settings):
            if base_url and base_url.startswith("https://"):
                problem = probe_tls13_only(base_url)
                return failed("tls", title, problem) if problem else passed(
                    "tls", title, f"{base_url}: TLS 1.3 accepted, TLS 1.2 refused (terminated in front of KNHK)")
            return not_applicable("tls", title, "no KNHK_TLS_CERT_FILE: TLS terminates in front of KNHK "
                                                "(enforce TLS 1.3 there; pass an https --base-url to probe it)")
        context = ssl_context_from_settings(settings)
        if context is None or settings.tls_cert_file is None:  # tls_enabled said both files are set
            return failed("tls", title, "TLS is configured but no listener context could be built")
        if context.minimum_version != ssl.TLSVersion.TLSv1_3:
            return failed("tls", title, f"the listener's minimum version is {context.minimum_version.name}")
        days, subject = certificate_days_left(settings.tls_cert_file)
    except Exception as exc:
        return failed("tls", title, " ".join(str(getattr(exc, "message", exc)).split())[:400])
    if days < min_days:
        return failed("tls", title, f"certificate {subject} expires in {days:.1f} days (limit {min_days:g}; "
                                    "docs/runbooks/certificate-expiration.md)")
    detail = f"listener TLS 1.3 only; certificate {subject} valid {days:.0f} more days"
    if settings.tls_client_ca_file is not None:
        detail += "; client certificates required (mTLS)"
    if base_url and base_url.startswith("https://"):
        problem = probe_tls13_only(base_url)
        if problem:
            return failed("tls", title, problem)
        detail += f"; {base_url}: TLS 1.3 accepted, TLS 1.2 refused"
    return passed("tls", title, detail)


def rules_check(rules: Path | None) -> Check:
    title = "Alert rules load (promtool)"
    where = rules or Path("deploy/monitoring/rules")
    if not where.is_dir():
        return failed("alert-rules", title, f"no rules directory {where} (pass --rules DIR)")
    problem, checked = promtool_problem(where)
    return failed("alert-rules", title, problem) if problem else passed("alert-rules", title, checked)


def telemetry_check() -> Check:
    import os

    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    from knhk.ops.telemetry.registry import default_registry_dir
    from knhk.service import telemetry_check as checker

    title = "Telemetry check passes"
    try:
        result = checker.run(default_registry_dir(), live=True)
    except Exception as exc:
        return failed("telemetry", title, f"{type(exc).__name__}: {exc}")
    if not result.ok:
        violations = [str(f) for f in result.findings if f.level == "violation"]
        return failed("telemetry", title, f"{len(violations)} violation(s): " + "; ".join(violations[:3]))
    stats = result.statistics
    return passed("telemetry", title, f"live check on {stats.get('backend')}: {stats.get('registry_signals_seen')} "
                                      f"of {stats.get('registry_signals')} declared signals seen")


def smoke_check(settings: Settings, base_url: str | None) -> Check:
    title = "Smoke test passes"
    if not base_url:
        return not_applicable("smoke", title, "no --base-url: no running service to smoke-test")
    verify: bool | str = str(settings.tls_cert_file) if settings.tls_cert_file else True
    problems = smoke_problems(base_url, verify=verify)
    return failed("smoke", title, "; ".join(problems)) if problems else passed(
        "smoke", title, f"{base_url}: ready, health, metrics and OpenAPI answered")


def preflight(
    ctx: typer.Context,
    base_url: Annotated[str | None, typer.Option(help="A running service to smoke-test (and probe TLS on, if "
                                                      "https).")] = None,
    rules: Annotated[Path | None, typer.Option(help="Prometheus rules directory to check with promtool "
                                                    "(default: deploy/monitoring/rules).")] = None,
    app_role: Annotated[str | None, typer.Option(help="PostgreSQL role to check (default: the role the "
                                                      "configured database URL logs in as).")] = None,
    backup_max_age_h: Annotated[float, typer.Option(help="The newest backup may be at most this old.")] = 26.0,
    cert_min_days: Annotated[float, typer.Option(help="The TLS certificate must stay valid this long.")] = 30.0,
    only: Annotated[str | None, typer.Option(help="Run only these checks (comma-separated ids).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check the deployment against the pre-deployment checklist; exit 1 when any check fails."""
    chosen = set(CHECK_IDS) if only is None else {c.strip() for c in only.split(",") if c.strip()}
    unknown = chosen - set(CHECK_IDS)
    if unknown or not chosen:
        raise UsageError(f"--only: unknown check(s) {', '.join(sorted(unknown)) or '(none)'}; the checks are "
                         f"{', '.join(CHECK_IDS)}")
    settings = state(ctx).settings()
    checks = deployment_checks(settings, app_role=app_role, backup_max_age_h=backup_max_age_h,
                               only=frozenset(chosen))
    if "tls" in chosen:
        checks.append(tls_check(settings, base_url, cert_min_days))
    if "alert-rules" in chosen:
        checks.append(rules_check(rules))
    if "telemetry" in chosen:
        checks.append(telemetry_check())
    if "smoke" in chosen:
        checks.append(smoke_check(settings, base_url))
    report = Report(checks)
    if as_json:
        print_json(report.to_json())
    else:
        table("Machine checks", ["check", "status", "detail"],
              [(escape(c.title), c.status.upper().replace("_", " "), escape(c.detail)) for c in checks])
        table("Manual items (a person decides)", ["section", "item", "who"],
              [(i.section, escape(i.text), escape(i.manual)) for i in report.manual_items()])
        n_fail = sum(1 for c in checks if c.status == "fail")
        say(f"preflight {'passed' if report.ok else 'FAILED'}: {sum(1 for c in checks if c.status == 'pass')} "
            f"passed, {n_fail} failed, {sum(1 for c in checks if c.status == 'not_applicable')} not applicable, "
            f"{len(report.manual_items())} manual")
    raise typer.Exit(0 if report.ok else 1)
