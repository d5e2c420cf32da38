"""Per-sector detector thresholds (SPEC §3: all thresholds configurable per sector): SPEC defaults, overridden by
the sector pack's ``detectors.json``, overridden by configuration (``KNHK_DETECTOR_SETTINGS``); the running loop
uses them, and ``knhk sectors show S`` shows each with where it came from."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from knhk.app.runtime import Runtime, detector_settings
from knhk.config import Settings
from knhk.detection.pattern import DetectorConfig
from knhk.detection.settings import parse_detector_settings
from knhk.errors import ConfigurationError
from knhk.sectors.detectors import pack_detector_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ledger"))

from ledger_support import run_cli


def test_every_bundled_pack_declares_its_detector_settings() -> None:
    for sector in ("finance", "healthcare", "manufacturing", "logistics"):
        declared = pack_detector_settings(sector)
        assert declared, sector
        assert set(declared) <= set(DetectorConfig.__dataclass_fields__)


def test_configuration_overrides_the_pack_which_overrides_the_defaults() -> None:
    settings = Settings(detector_settings={"finance": {"high_frequency_count": 40, "silence_s": 30}})
    effective = detector_settings("finance", settings)
    assert effective.config.high_frequency_count == 40
    assert effective.config.silence_s == 30
    assert effective.source["high_frequency_count"] == "configuration"
    pack = pack_detector_settings("finance")
    for key in set(pack) - {"high_frequency_count", "silence_s"}:
        assert effective.source[key] == "pack"
        assert getattr(effective.config, key) == pack[key]
    untouched = detector_settings("healthcare", settings)
    assert untouched.source["high_frequency_count"] == "pack"


@pytest.mark.parametrize(("raw", "message"), [
    ({"high_frequency_cnt": 5}, "unknown detector setting 'high_frequency_cnt'"),
    ({"error_share": 1.5}, "error_share must be a fraction"),
    ({"silence_s": "ten"}, "silence_s must be a number"),
    ({"high_frequency_count": 2.5}, "high_frequency_count must be a whole number"),
    ({"max_evidence": True}, "max_evidence must be a whole number"),
])
def test_bad_settings_are_refused_naming_them(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_detector_settings(raw, "KNHK_DETECTOR_SETTINGS finance")


def test_a_sector_unknown_to_the_installation_is_refused_in_configuration(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", detector_settings={"nope": {"silence_s": 3}})
    with pytest.raises(ConfigurationError, match="KNHK_DETECTOR_SETTINGS names sector 'nope'"):
        Runtime.open(settings)


def test_the_loop_detects_with_the_configured_thresholds(tmp_path: Path, database_url: str) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url, db_pool_min=1, db_pool_max=4,
                        detector_settings={"finance": {"high_frequency_count": 20}})
    with Runtime.open(settings) as rt:
        assert rt.engine.config("finance").high_frequency_count == 20
        rt.ingestor.ingest_batch([{"event_type": "payment.created", "sector": "finance",
                                   "value": {"account_id": "A", "transaction_amount": 1, "currency": "EUR"}}
                                  for _ in range(25)])
        record = rt.run_cycle("finance")
        assert "high_frequency:payment.created" in [p["name"] for p in record.patterns]


def test_knhk_sectors_show_lists_thresholds_with_their_source(tmp_path: Path) -> None:
    data = tmp_path / "data"
    database_url = f"sqlite:///{data / 'knhk.db'}"
    env = {"KNHK_DETECTOR_SETTINGS": '{"manufacturing": {"error_share": 0.2}}'}
    done = run_cli(["sectors", "show", "manufacturing", "--json"], data, database_url, env=env)
    assert done.returncode == 0, done.stderr
    shown = orjson.loads(done.stdout)
    detectors = {d["setting"]: d for d in shown["detectors"]}
    assert detectors["error_share"] == {"setting": "error_share", "value": 0.2, "source": "configuration"}
    assert detectors["high_frequency_count"]["source"] == "pack"
    assert [g["guard_id"] for g in shown["guards"]] == ["ISO9001-QUALITY-001"]
    assert shown["guards"][0]["criticality"] == "critical"
    assert [d["id"] for d in shown["doctrines"]] == ["ISO9001-QUALITY-001"]
    assert shown["current_snapshot"]
    text = run_cli(["sectors", "show", "manufacturing"], data, database_url, env=env)
    assert text.returncode == 0, text.stderr
    assert "error_share" in text.stdout
    assert "configuration" in text.stdout
    unknown = run_cli(["sectors", "show", "nope"], data, database_url)
    assert unknown.returncode == 2
    assert "installed: finance, healthcare, logistics, manufacturing" in unknown.stderr
    listed = run_cli(["sectors", "list", "--json"], data, database_url)
    assert [s["sector"] for s in orjson.loads(listed.stdout)] == ["finance", "healthcare", "logistics",
                                                                   "manufacturing"]
