"""The HA tests drive the same cluster launcher and drill as ``make ha-drill`` (``deploy/ha``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy" / "ha"))
