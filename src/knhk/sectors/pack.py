"""Loading a bundled sector pack: ``packs/<sector>/sigma.ttl`` (Σ_sector), ``doctrines.json`` and the optional
``detectors.json`` and ``privacy.json`` (the PHI fields, encrypted at rest).

A pack is checked as it loads: Σ_sector must parse, use its own namespace ``https://knhk.dev/ns/<sector>#``,
pass the static meta-check (:func:`knhk.ontology.shacl.check_sigma_wellformed`), and every doctrine must be
well-formed (known type and level, the pack's sector, ISO dates). A broken pack raises
:class:`~knhk.errors.ConfigurationError` naming the file and the problem. Format: docs/sector-packs.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from knhk.errors import ConfigurationError, InvalidInputError, NotFoundError
from knhk.ontology.core import core_triples
from knhk.ontology.namespaces import RDFS, sector_namespace
from knhk.ontology.rdf import Triple, parse_rdf
from knhk.ontology.shacl import check_sigma_wellformed
from knhk.ontology.snapshot import check_sector

DOCTRINE_TYPES = ("approval_chain", "segregation_of_duties", "resource_limit", "time_window", "protected")
DOCTRINE_LEVELS = ("mandatory", "warning", "advisory")
DOCTRINE_KEYS = frozenset({"id", "sector", "type", "level", "params", "effective_from", "expires", "description"})


@dataclass(frozen=True)
class SectorPack:
    """One sector's bundled starting point."""

    sector: str
    namespace: str
    sigma: frozenset[Triple]
    doctrines: tuple[dict[str, Any], ...]
    description: str
    phi_fields: frozenset[str] = frozenset()  # value fields stored encrypted at rest (privacy.json)


def _packs() -> Traversable:
    return resources.files("knhk.sectors").joinpath("packs")


def available_sectors() -> list[str]:
    """The sectors that ship a pack, sorted."""
    return sorted(item.name for item in _packs().iterdir()
                  if item.is_dir() and item.joinpath("sigma.ttl").is_file())


def _check_date(value: Any, where: str, field: str) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise ConfigurationError(f"{where}: {field} must be a YYYY-MM-DD date or null")
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ConfigurationError(f"{where}: {field} {value!r} is not a YYYY-MM-DD date") from None


def _check_doctrine(rule: Any, sector: str, where: str) -> dict[str, Any]:
    if not isinstance(rule, dict):
        raise ConfigurationError(f"{where}: each doctrine must be a JSON object")
    missing = DOCTRINE_KEYS - rule.keys()
    extra = rule.keys() - DOCTRINE_KEYS
    if missing or extra:
        raise ConfigurationError(f"{where}: doctrine keys missing {sorted(missing)} / unknown {sorted(extra)}")
    label = f"{where}: doctrine {rule['id']!r}"
    if rule["sector"] != sector:
        raise ConfigurationError(f"{label} belongs to sector {rule['sector']!r}, not {sector!r}")
    if rule["type"] not in DOCTRINE_TYPES:
        raise ConfigurationError(f"{label} has unknown type {rule['type']!r}")
    if rule["level"] not in DOCTRINE_LEVELS:
        raise ConfigurationError(f"{label} has unknown level {rule['level']!r}")
    if not isinstance(rule["params"], dict):
        raise ConfigurationError(f"{label}: params must be an object")
    _check_date(rule["effective_from"], label, "effective_from")
    _check_date(rule["expires"], label, "expires")
    return rule


def _description(sigma: frozenset[Triple], namespace: str) -> str:
    ontology = f"<{namespace.rstrip('#')}>"
    for s, p, o in sorted(sigma):
        if s == ontology and p == f"<{RDFS}label>":
            return o.strip('"')
    return f"KNHK {namespace} sector"


@cache
def load_pack(sector: str) -> SectorPack:
    """Load and check the bundled pack of ``sector``."""
    try:
        check_sector(sector)
    except InvalidInputError as exc:
        raise NotFoundError(f"there is no sector pack named {sector!r}") from exc
    folder = _packs().joinpath(sector)
    sigma_file = folder.joinpath("sigma.ttl")
    if not sigma_file.is_file():
        raise NotFoundError(f"there is no sector pack named {sector!r}; available: "
                            f"{', '.join(available_sectors())}")
    where = f"sector pack {sector}"
    try:
        sigma = frozenset(parse_rdf(sigma_file.read_text(encoding="utf-8"), "turtle", what=f"{where} sigma.ttl"))
    except InvalidInputError as exc:
        raise ConfigurationError(exc.message) from None
    namespace = sector_namespace(sector)
    problems = check_sigma_wellformed(sigma, context=core_triples())
    if problems:
        raise ConfigurationError(f"{where} sigma.ttl is not well-formed: {'; '.join(problems)}")
    if not any(s.startswith(f"<{namespace}") for s, _, _ in sigma):
        raise ConfigurationError(f"{where} sigma.ttl declares nothing in its namespace {namespace}")
    doctrines_file = folder.joinpath("doctrines.json")
    try:
        raw = json.loads(doctrines_file.read_text(encoding="utf-8")) if doctrines_file.is_file() else []
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{where} doctrines.json is not valid JSON: {exc}") from None
    if not isinstance(raw, list):
        raise ConfigurationError(f"{where} doctrines.json must hold a JSON list")
    doctrines = tuple(_check_doctrine(rule, sector, f"{where} doctrines.json") for rule in raw)
    return SectorPack(sector, namespace, sigma, doctrines, _description(sigma, namespace),
                      _phi_fields(folder.joinpath("privacy.json"), f"{where} privacy.json"))


def _phi_fields(privacy_file: Traversable, where: str) -> frozenset[str]:
    """``privacy.json``: ``{"phi_fields": [field, …]}`` — the observation value fields that are protected
    health information, stored encrypted at rest (docs/sector-packs.md)."""
    if not privacy_file.is_file():
        return frozenset()
    try:
        raw = json.loads(privacy_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or set(raw) != {"phi_fields"}:
        raise ConfigurationError(f'{where} must be an object with exactly the key "phi_fields"')
    names = raw["phi_fields"]
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ConfigurationError(f"{where}: phi_fields must be a list of field names")
    return frozenset(names)
