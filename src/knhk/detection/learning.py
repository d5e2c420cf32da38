"""Learning detector confidence thresholds from proposal outcomes (SPEC §3 "Learning", §1 Knowledge).

Per sector and pattern kind the threshold lives in [0.70, 0.95] and moves in steps of 0.05 (kept in
thousandths: 700…950, step 50). Outcomes (a proposal born of such a pattern accepted or rejected) are counted
into a sample; once the sample holds ``SAMPLE_SIZE`` = 10 outcomes it is judged and cleared:

- acceptance rate < 0.5 (at most 4 of 10 accepted): too many useless patterns → threshold + 0.05;
- acceptance rate > 0.9 (10 of 10 accepted): patterns are reliably useful → threshold − 0.05;
- otherwise unchanged. The threshold never leaves [0.70, 0.95].

Pure arithmetic; persistence is :mod:`knhk.detection.thresholds`.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

MIN_MILLI = 700
MAX_MILLI = 950
STEP_MILLI = 50
SAMPLE_SIZE = 10
RAISE_BELOW = Fraction(1, 2)
LOWER_ABOVE = Fraction(9, 10)


def clamp(threshold_milli: int) -> int:
    return max(MIN_MILLI, min(MAX_MILLI, threshold_milli))


@dataclass(frozen=True)
class ThresholdState:
    """A learned threshold and the outcomes counted since it last was judged."""

    threshold_milli: int = MIN_MILLI
    accepted: int = 0
    rejected: int = 0

    @property
    def threshold(self) -> float:
        return self.threshold_milli / 1000


def record_outcome(state: ThresholdState, accepted: bool) -> ThresholdState:
    """Count one outcome; adjust the threshold when the sample is complete."""
    acc = state.accepted + (1 if accepted else 0)
    rej = state.rejected + (0 if accepted else 1)
    if acc + rej < SAMPLE_SIZE:
        return ThresholdState(clamp(state.threshold_milli), acc, rej)
    rate = Fraction(acc, acc + rej)
    threshold = state.threshold_milli
    if rate < RAISE_BELOW:
        threshold += STEP_MILLI
    elif rate > LOWER_ABOVE:
        threshold -= STEP_MILLI
    return ThresholdState(clamp(threshold), 0, 0)
