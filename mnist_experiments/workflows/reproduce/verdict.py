"""Verdicts: is a reproduction the original result, consistent with it, or not?

``REPRODUCED``: every compared metric equals the original's (or lies within
``--tolerance``). When it does not (another CPU, other software, a changed thread
count...), bit-identity cannot be expected, so the reproduction measures this config's
run-to-run variation on this machine: the exact re-run plus ``n`` re-runs with other
seeds. For each judged metric (the objective and ``test_accuracy``, ``cv_val_accuracy_mean``
for k-fold, and any metric the submission claims with ``--expect``) a 99% prediction
interval for one more run is computed from those values,

    mean ± t(0.995, n-1) · s · sqrt(1 + 1/n)

on a variance-stabilising scale (logit for accuracies, log for losses, so that an
interval never leaves [0, 1] or goes below 0): ``CONSISTENT`` if the original lies
inside every judged interval, ``INCONSISTENT`` (naming the metrics and by how much) if
not. For a normally distributed metric an honest run falls outside one such interval
with probability 1%; with ``m`` judged metrics the false-alarm rate is at most m%
(Bonferroni), measured in bench/results-false-alarms.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import stats

REPRODUCED = "REPRODUCED"
CONSISTENT = "CONSISTENT"
INCONSISTENT = "INCONSISTENT"
LEVEL = 0.99  # of each judged metric's prediction interval

# Metrics that are results (timings are not).
COMPARED_NAMES = ("objective",)
COMPARED_PREFIXES = ("test_", "cv_")
# The calibrated verdict judges these (those the original has), plus claimed ones.
JUDGED = ("objective", "test_accuracy", "cv_val_accuracy_mean")


def is_compared(name: str) -> bool:
    """Whether a metric is a result to compare (objective, test_*, cv_*; no timings)."""
    if name.endswith("_seconds"):
        return False
    return name in COMPARED_NAMES or name.startswith(COMPARED_PREFIXES)


@dataclass
class Row:
    name: str
    original: Optional[float]
    reproduced: Optional[float]

    @property
    def difference(self) -> Optional[float]:
        if self.original is None or self.reproduced is None:
            return None
        if self.original == self.reproduced or (
                math.isnan(self.original) and math.isnan(self.reproduced)):
            return 0.0
        return self.reproduced - self.original

    def ok(self, tolerance: float) -> bool:
        if self.original is None:  # nothing to compare with
            return True
        d = self.difference
        return d is not None and not math.isnan(d) and abs(d) <= tolerance


def compare_metrics(original: Dict[str, float], reproduced: Dict[str, float]) -> List[Row]:
    names = {n for n in (*original, *reproduced) if is_compared(n)}

    def order(name: str) -> Tuple[int, str]:
        return (0 if name == "objective" else 1 if name.startswith("test_") else 2, name)

    return [Row(n, original.get(n), reproduced.get(n)) for n in sorted(names, key=order)]


# ---------------------------------------------------------------- calibration
def _scale(name: str):
    """(forward, inverse) of the variance-stabilising transform for a metric."""
    if "loss" in name:
        return (lambda v: np.log(np.maximum(v, 1e-12)), np.exp)
    if any(k in name for k in ("accuracy", "precision", "recall", "f1", "objective")):
        eps = 1e-4

        def logit(v):
            v = np.clip(v, eps, 1 - eps)
            return np.log(v / (1 - v))

        return (logit, lambda z: 1 / (1 + np.exp(-z)))
    return (lambda v: np.asarray(v, dtype=float), lambda z: z)


@dataclass
class Interval:
    """The prediction interval of one metric, from ``values`` of runs on this machine."""

    metric: str
    values: List[float]
    low: float
    high: float
    level: float = LEVEL

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if self.n > 1 else 0.0

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def distance(self, value: float) -> float:
        """How far ``value`` lies outside the interval (0 inside)."""
        return max(self.low - value, value - self.high, 0.0)

    def describe(self) -> str:
        return (f"{self.metric}: {self.level:.0%} interval [{self.low:.4f}, {self.high:.4f}] "
                f"from {self.n} runs here (mean {self.mean:.4f}, sd {self.std:.4f})")


def prediction_interval(metric: str, values: Sequence[float], level: float = LEVEL,
                        floor: float = 0.0) -> Interval:
    """The ``level`` prediction interval for one more run of the same config.

    ``floor``: the smallest spread assumed on the original scale (e.g. ``--tolerance``),
    so that identical values do not give an empty interval.
    """
    values = [float(v) for v in values]
    n = len(values)
    if n < 2:
        raise ValueError("a prediction interval needs at least 2 runs")
    forward, inverse = _scale(metric)
    z = forward(np.asarray(values, dtype=float))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * float(np.std(z, ddof=1)) \
        * math.sqrt(1 + 1 / n)
    low, high = float(inverse(z.mean() - half)), float(inverse(z.mean() + half))
    centre = float(np.mean(values))
    low, high = min(low, centre - floor), max(high, centre + floor)
    return Interval(metric, values, low, high, level)


@dataclass
class Verdict:
    word: str  # REPRODUCED | CONSISTENT | INCONSISTENT
    detail: str
    failing: List[str] = field(default_factory=list)
    intervals: List[Interval] = field(default_factory=list)

    @property
    def exit_status(self) -> int:
        return 1 if self.word == INCONSISTENT else 0


def judged_metrics(rows: List[Row], claimed: Sequence[str] = ()) -> List[str]:
    """The metrics the calibrated verdict judges: :data:`JUDGED` and the claimed ones,
    among those both the original and the reproduction have."""
    have = {r.name for r in rows if r.original is not None and r.reproduced is not None}
    return [m for m in dict.fromkeys((*JUDGED, *claimed)) if m in have]


def exact_verdict(rows: List[Row], tolerance: float) -> Optional[Verdict]:
    """REPRODUCED when every compared metric matches within ``tolerance``, else None."""
    compared = [r for r in rows if r.original is not None]
    if any(not r.ok(tolerance) for r in compared):
        return None
    worst = max((abs(r.difference) for r in compared), default=0.0)
    return Verdict(REPRODUCED, f"{len(compared)} metric{'s' if len(compared) != 1 else ''}, "
                               f"max |difference| {worst:g} <= tolerance {tolerance:g}")


def calibrated_verdict(rows: List[Row], runs: Dict[str, List[float]], judged: Sequence[str],
                       tolerance: float = 0.0, level: float = LEVEL) -> Verdict:
    """CONSISTENT or INCONSISTENT: do the original's judged metrics lie in the intervals
    computed from ``runs[metric]`` (the values of this machine's runs)?"""
    original = {r.name: r.original for r in rows}
    intervals = [prediction_interval(m, runs[m], level, floor=tolerance)
                 for m in judged if len(runs.get(m, [])) >= 2]
    outside = [i for i in intervals if not i.contains(original[i.metric])]
    n = intervals[0].n if intervals else 0
    if outside:
        detail = "; ".join(
            f"{i.metric} {original[i.metric]:.4f} lies {i.distance(original[i.metric]):.4f} "
            f"outside [{i.low:.4f}, {i.high:.4f}]" for i in outside)
        return Verdict(INCONSISTENT, f"{detail} ({level:.0%} prediction intervals from {n} "
                                     "runs of this config here)",
                       [i.metric for i in outside], intervals)
    return Verdict(CONSISTENT,
                   f"not identical, but {', '.join(i.metric for i in intervals)} lie within "
                   f"the {level:.0%} prediction intervals of {n} runs of this config here",
                   [], intervals)
