"""What the documentation names (not a test module): ``knhk …`` commands, HTTP routes, metric names, alert
names and recording rules, extracted from the Markdown of README.md, docs/*.md and docs/runbooks/*.md, and
the checks that each exists — the command path in the CLI's click tree (its options too) and its ``--help``,
the route in the service's OpenAPI document, the metric in registry/, the alert and recording rule in
deploy/monitoring/rules. Shared by test_docs_commands.py and the runbook rehearsal."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
import yaml

from knhk.config import Settings

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "monitoring" / "rules"
SKIPPED_BLOCKS = {"mermaid", "json", "turtle", "ttl", "sparql", "yaml", "jsonc", "text"}
# knhk_… identifiers in the docs that are not metrics: PostgreSQL role names and name prefixes
NOT_METRICS = {"knhk_app", "knhk_app_password", "knhk_owner", "knhk_console"}  # roles, a cookie
# the secret files of KNHK_SECRETS_DIR are named after settings (knhk_database_url, knhk_signing_key, ...)
SECRET_FILES = {f"knhk_{name}" for name in Settings.model_fields}
METRIC = re.compile(r"(?<![\w/.-])((?:knhk|process|python)_[a-z0-9_]+)\b(?![(=])")  # not f(…) nor key=
ALERT = re.compile(r"\b(Knhk[A-Z][A-Za-z0-9]+)\b")
RECORDING = re.compile(r"\b(knhk:[a-z_]+:(?:rate|ratio|p\d+|mean)[a-z0-9_]*)\b")
ROUTE = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE|HEAD) (/[^\s`'\"),;]*)")
# `knhk` in command position: at the start (after VAR=value assignments), or after | ; && $( ( or a backtick
COMMAND = re.compile(r"(?:^\s*(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*|(?:\$\(|[;&|(`])\s*)(?:\S*/)?knhk\s+(?=[-a-z])")
FENCE = re.compile(r"^\s*```(\S*)\s*$")
STOP_TOKENS = {"|", "||", ";", "&&", "&", ">", ">>", "<", "2>&1", "#", "\\"}


@dataclass(frozen=True)
class Ref:
    """One reference in one document: what (the text), where (file and line)."""

    kind: str  # command, route, metric, alert, recording
    text: str
    file: str
    line: int

    def where(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


def documents() -> list[Path]:
    docs = ROOT / "docs"
    return [ROOT / "README.md", *sorted(docs.glob("*.md")), *sorted((docs / "runbooks").glob("*.md"))]


def _lines(text: str) -> Iterator[tuple[int, str, str | None]]:
    """(line number, line, language of the fenced block it is in or None for prose)."""
    lang: str | None = None
    for n, line in enumerate(text.splitlines(), 1):
        fence = FENCE.match(line)
        if fence:
            lang = (fence.group(1) or "sh") if lang is None else None
            continue
        yield n, line, lang


def _command_tokens(rest: str) -> list[str]:
    out = []
    for token in rest.split():
        if token in STOP_TOKENS or token.startswith("#"):
            break
        closing = token.endswith(")") and not token.startswith("(")
        token = token.rstrip(")`")
        if token:
            out.append(token)
        if closing:
            break
    return out


def commands_in(text: str, lang: str | None) -> list[str]:
    """Every ``knhk …`` invocation of one line in command position: in a shell block, or in prose inside an
    inline code span."""
    found = []
    for line in re.findall(r"`([^`]+)`", text) if lang is None else [text]:
        for m in COMMAND.finditer(line):
            found.append(" ".join(_command_tokens(line[m.end():])))
    return [f"knhk {c}".rstrip() for c in found]


def extract(paths: Iterable[Path] | None = None) -> list[Ref]:
    refs: list[Ref] = []
    for path in paths or documents():
        name = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
        for n, line, lang in _lines(path.read_text()):
            if lang in SKIPPED_BLOCKS:
                continue
            refs += [Ref("command", c, name, n) for c in commands_in(line, lang)]
            refs += [Ref("route", f"{m.group(1)} {m.group(2)}", name, n) for m in ROUTE.finditer(line)]
            refs += [Ref("metric", m, name, n) for m in METRIC.findall(line)
                     if m not in NOT_METRICS and m not in SECRET_FILES and not m.endswith("_")]
            refs += [Ref("alert", m, name, n) for m in ALERT.findall(line)]
            refs += [Ref("recording", m, name, n) for m in RECORDING.findall(line)]
    return refs


# -- commands ---------------------------------------------------------------------------------------------
def _is_group(cmd: Any) -> bool:
    return hasattr(cmd, "commands")  # typer vendors click: duck-typed, not isinstance(click.Group)


def _options(cmd: Any) -> dict[str, bool]:
    """Each option of ``cmd`` → whether it is a flag (takes no value)."""
    out = {"--help": True}
    for p in cmd.params:
        if getattr(p, "param_type_name", "") == "option":
            for opt in (*p.opts, *p.secondary_opts):
                out[opt] = bool(p.is_flag)
    return out


def _option_name(token: str) -> str | None:
    token = token.strip("[]")
    m = re.match(r"^(--?[a-z][a-z0-9-]*)", token)
    return m.group(1) if m else None


def resolve(root: Any, tokens: list[str]) -> tuple[list[list[str]], list[str]]:
    """The command paths ``tokens`` names (``a/b`` and ``a|b`` name several) and the problems found: an unknown
    sub-command, an option the command does not have."""
    paths: list[list[str]] = []
    problems: list[str] = []

    def walk(cmd: Any, path: list[str], rest: list[str]) -> None:
        i = 0
        while i < len(rest):
            token = rest[i]
            opt = _option_name(token)
            if _is_group(cmd) and opt is None:
                names = re.split(r"[/|]", token)
                if all(n in cmd.commands for n in names):
                    for n in names:
                        walk(cmd.commands[n], [*path, n], rest[i + 1:])
                    return
                if re.fullmatch(r"[a-z][a-z0-9-]*", token):
                    problems.append(f"`knhk {' '.join(path)}` has no sub-command {token!r}")
                    return
                break  # a placeholder or value: the path ends here
            if opt is not None:
                known = _options(cmd)
                if opt not in known:
                    problems.append(f"`knhk {' '.join(path)}` has no option {opt}")
                elif "=" not in token and not known[opt]:
                    i += 1  # its value
            i += 1
        paths.append(path)

    walk(root, [], tokens)
    return paths, problems


def click_root() -> Any:
    from knhk.cli.main import app

    return typer.main.get_command(app)


# -- routes -----------------------------------------------------------------------------------------------
def route_variants(path: str) -> tuple[list[str], bool]:
    """The concrete paths a documented route stands for (``[/{id}]`` optional parts both ways, query dropped)
    and whether it is a prefix (ends in ``…``)."""
    path = path.split("?", 1)[0].rstrip(".:")
    prefix = path.endswith("…")
    path = path.rstrip("…")
    variants = [path]
    while any("[" in v for v in variants):
        nxt = []
        for v in variants:
            m = re.search(r"\[([^\]]*)\]", v)
            if m is None:
                nxt.append(v)
                continue
            nxt += [v[:m.start()] + v[m.end():], v[:m.start()] + m.group(1) + v[m.end():]]
        variants = nxt
    return variants, prefix


def route_exists(method: str, path: str, openapi: dict[str, Any]) -> bool:
    routes = [(p, {m.upper() for m in ops}) for p, ops in openapi["paths"].items()]
    variants, prefix = route_variants(path)
    for v in variants:
        for candidate in (v, "/api/v1" + v):
            for template, methods in routes:
                if method not in methods:
                    continue
                if prefix and template.startswith(candidate):
                    return True
                if re.fullmatch(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)), candidate):
                    return True
    return False


# -- metrics, alerts, recording rules ---------------------------------------------------------------------
def declared_metrics() -> tuple[set[str], set[str]]:
    from knhk.ops.telemetry.conformance import prometheus_name
    from knhk.ops.telemetry.registry import default_registry_dir, load_registry

    registry = load_registry(default_registry_dir())
    metrics = registry.of_type("metric")
    return ({prometheus_name(s) for s in metrics}, {prometheus_name(s) for s in metrics if s.instrument == "histogram"})


def metric_exists(name: str, declared: set[str], histograms: set[str]) -> bool:
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    return name in declared or base in histograms


def rules() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for f in sorted(RULES.glob("*.yml")):
        out += [r for g in yaml.safe_load(f.read_text())["groups"] for r in g["rules"]]
    return out


def alert_names() -> set[str]:
    return {r["alert"] for r in rules() if "alert" in r}


def recording_names() -> set[str]:
    return {r["record"] for r in rules() if "record" in r}


# -- runbook code blocks ----------------------------------------------------------------------------------
def shell_commands(path: Path) -> list[str]:
    """The ``knhk`` lines of a runbook's shell code blocks, in order (what an operator types)."""
    out = []
    for _, line, lang in _lines(path.read_text()):
        if lang in ("sh", "bash", "console", "shell") and line.strip().startswith("knhk "):
            out.append(line.split(" #", 1)[0].strip())
    return out
