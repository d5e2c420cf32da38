"""A sector pack's change-class rules file, ``packs/<sector>/classes.json`` (docs/change-governance.md).

Only read here (an object of setting → value; an absent file is an empty one); what the settings mean and how
they are checked and layered with configuration is :mod:`knhk.validation.classes`.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from knhk.errors import ConfigurationError


def pack_class_rules(sector: str) -> dict[str, Any]:
    """The change-class rules a bundled pack declares in ``classes.json`` (empty when it has none)."""
    return dict(_read(sector))


@cache
def _read(sector: str) -> tuple[tuple[str, Any], ...]:
    path = resources.files("knhk.sectors").joinpath("packs", sector, "classes.json")
    if not path.is_file():
        return ()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"sector pack {sector} classes.json is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigurationError(f"sector pack {sector} classes.json must hold a JSON object")
    return tuple(raw.items())
