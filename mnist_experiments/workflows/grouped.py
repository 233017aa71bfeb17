"""A seed sweep's leaderboard grouped by configuration: is one setting really better?

A sweep that varies ``seed`` (``mnist-exp -m optimizer=adam,sgd seed=1,2,3,4,5``) trains
every configuration several times. :func:`group_rows` joins the finished jobs by their
``config_id`` tag (:mod:`mnist_experiments.config.identity`: the config without its
seed) into one row per configuration: ``n``, the mean, the sample standard deviation
and a 95% confidence interval of the mean (Student's t, n - 1 degrees of freedom) of the
objective and of ``test_accuracy``. :func:`compare_best` then asks whether the best
configuration's objective is higher than the runner-up's beyond what the seeds alone
would give: Welch's t-test (one-sided, unequal variances), which suits a handful of
runs per configuration; with fewer than two runs in either there is nothing to test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np

ALPHA = 0.05
TEST_NAME = "Welch's t-test (one-sided, unequal variances)"
STATS = ("mean", "std", "ci95_low", "ci95_high")
METRICS = ("objective", "test_accuracy")
COLUMNS = ["rank", "config_id", "configuration", "n",
           *[f"{m}_{s}" for m in METRICS for s in STATS], "seeds", "run_ids"]


@dataclass
class Comparison:
    best: str  # config ids
    runner_up: str
    p_value: Optional[float]  # None: not testable (fewer than two runs in a group)
    significant: bool

    def sentence(self, groups: List[Dict[str, Any]]) -> str:
        names = {g["config_id"]: g["configuration"] or "defaults" for g in groups}
        best, other = names[self.best], names[self.runner_up]
        if self.p_value is None:
            return (f"Best configuration: {best}. Whether it beats the runner-up ({other}) "
                    f"cannot be tested: {TEST_NAME} needs at least two seeds in each.")
        verdict = "significantly better" if self.significant else "not significantly better"
        return (f"Best configuration: {best}; it is {verdict} than the runner-up ({other}): "
                f"{TEST_NAME} on the objective, p = {self.p_value:.3g} "
                f"({'<' if self.significant else '>='} {ALPHA}).")


def _seedless(overrides: str) -> str:
    return " ".join(o for o in str(overrides or "").split() if not o.startswith("seed="))


def varies_seed(rows: List[Dict[str, Any]]) -> bool:
    """Whether a sweep trained some configuration with several seeds."""
    seen: Dict[str, set] = {}
    for row in rows:
        if row.get("status") == "FINISHED" and row.get("config_id"):
            seen.setdefault(row["config_id"], set()).add(str(row.get("seed")))
    return any(len(seeds) > 1 for seeds in seen.values())


def _stats(values: List[float]) -> Dict[str, Optional[float]]:
    from scipy import stats

    a = np.asarray(values, dtype=np.float64)
    mean = float(a.mean())
    if a.size < 2:
        return {"mean": mean, "std": None, "ci95_low": None, "ci95_high": None}
    std = float(a.std(ddof=1))
    half = float(stats.t.ppf(0.975, a.size - 1)) * std / math.sqrt(a.size)
    return {"mean": mean, "std": std, "ci95_low": mean - half, "ci95_high": mean + half}


def group_rows(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One row per configuration of the finished jobs, best mean objective first."""
    groups: Dict[str, List[Dict[str, Any]]] = {}
    for row in rows:
        if row.get("status") == "FINISHED" and row.get("config_id") \
                and row.get("objective") is not None:
            groups.setdefault(row["config_id"], []).append(row)
    out = []
    for cid, members in groups.items():
        members.sort(key=lambda r: str(r.get("seed")))
        entry: Dict[str, Any] = {"config_id": cid, "n": len(members),
                                 "configuration": _seedless(members[0].get("overrides")),
                                 "seeds": " ".join(str(r.get("seed")) for r in members),
                                 "run_ids": " ".join(r.get("run_id") or "" for r in members),
                                 "_objectives": [float(r["objective"]) for r in members]}
        for metric in METRICS:
            values = [float(r[metric]) for r in members if r.get(metric) is not None]
            stats = _stats(values) if values else dict.fromkeys(STATS)
            entry.update({f"{metric}_{s}": v for s, v in stats.items()})
        out.append(entry)
    if len(out) > 1:  # name each configuration by what tells it from the others
        common = set.intersection(*(set(g["configuration"].split()) for g in out))
        for entry in out:
            entry["configuration"] = " ".join(
                o for o in entry["configuration"].split() if o not in common) or "defaults"
    out.sort(key=lambda g: -g["objective_mean"])
    for rank, entry in enumerate(out, start=1):
        entry["rank"] = rank
    return out


def compare_best(groups: List[Dict[str, Any]]) -> Optional[Comparison]:
    """The best configuration against the runner-up (None with fewer than two)."""
    if len(groups) < 2:
        return None
    best, other = groups[0], groups[1]
    a, b = best["_objectives"], other["_objectives"]
    if len(a) < 2 or len(b) < 2:
        return Comparison(best["config_id"], other["config_id"], None, False)
    from scipy import stats

    if np.std(a) == 0 and np.std(b) == 0:  # no spread at all: the means decide
        p = 0.0 if np.mean(a) > np.mean(b) else 1.0
    else:
        p = float(stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue)
    return Comparison(best["config_id"], other["config_id"], p, p < ALPHA)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|")


def to_markdown(groups: List[Dict[str, Any]], comparison: Optional[Comparison]) -> str:
    shown = [c for c in COLUMNS if c != "run_ids"]
    lines = ["", "## Grouped over seeds", "",
             f"{len(groups)} configurations; mean, standard deviation and 95% confidence "
             "interval of the mean over each configuration's seeds."]
    if comparison is not None:
        lines += ["", comparison.sentence(groups)]
    lines += ["", "| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for group in groups:
        lines.append("| " + " | ".join(_fmt(group.get(c)) for c in shown) + " |")
    return "\n".join(lines) + "\n"


def parent_metrics(groups: List[Dict[str, Any]], comparison: Optional[Comparison]
                   ) -> Dict[str, float]:
    """What the sweep's parent run records of the grouped table."""
    best = groups[0]
    metrics = {f"grouped_best_{k}": best[k] for k in
               ("objective_mean", "objective_std", "test_accuracy_mean", "test_accuracy_std")
               if best.get(k) is not None}
    metrics["grouped_best_n"] = best["n"]
    metrics["grouped_configurations"] = len(groups)
    if comparison is not None and comparison.p_value is not None:
        metrics["grouped_p_value"] = comparison.p_value
    return metrics
