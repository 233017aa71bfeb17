"""The determinism benchmark's statistics and its Markdown report (see determinism.py).

The raw results of every part are kept in an HTML comment at the report's end, so that
one part can be re-run and the others kept (:func:`load_stored`).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import platform
import re
import statistics
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent


# the speed and spread parts' Fashion-MNIST runs (8,000 images, 3 epochs)
def fashion_args(path: str) -> List[str]:
    return ["experiment=seed_notebook", "data=fashion_mnist", f"data.path={path}",
            "data.limit=8000", "train.epochs=3", "viz.enabled=false", "mlflow.log_model=false"]



# --------------------------------------------------------------------------- statistics


def t_quantile(p: float, dof: int) -> float:
    """Student-t quantile (SciPy if present, else bisection on the regularized beta)."""
    try:
        from scipy.stats import t

        return float(t.ppf(p, dof))
    except ImportError:
        pass

    def cdf(x: float) -> float:  # numerical integration of the t density
        c = math.gamma((dof + 1) / 2) / (math.sqrt(dof * math.pi) * math.gamma(dof / 2))
        n = 20000
        h = x / n
        s = sum((1 + ((i + 0.5) * h) ** 2 / dof) ** (-(dof + 1) / 2) for i in range(n)) * h
        return 0.5 + c * s

    lo, hi = 0.0, 100.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def describe(values: Sequence[float]) -> Dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values),
            "min": min(values), "max": max(values), "n": len(values)}


def flagged(original: float, reruns: Sequence[float], k: float, side: int = 0) -> bool:
    """Outside mean +- k*s*sqrt(1+1/n); side=+1 (-1): only a too high (too low) value."""
    n = len(reruns)
    mean = statistics.fmean(reruns)
    half = k * statistics.stdev(reruns) * math.sqrt(1 + 1 / n)
    if side > 0:
        return original > mean + half
    if side < 0:
        return original < mean - half
    return abs(original - mean) > half


def false_alarms(values: Sequence[float], n: int, k: float, side: int = 0) -> Tuple[float, int]:
    """Each value as the original against every n-subset of the others: flagged fraction."""
    hits = total = 0
    for i, original in enumerate(values):
        others = values[:i] + values[i + 1:]
        for subset in itertools.combinations(others, n):
            total += 1
            hits += flagged(original, subset, k, side)
    return hits / total, total


def claim_flagged(claim: float, values: Sequence[float], n: int, k: float,
                  side: int = 0) -> Tuple[float, int]:
    subsets = list(itertools.combinations(values, n))
    return sum(flagged(claim, s, k, side) for s in subsets) / len(subsets), len(subsets)


# --------------------------------------------------------------------------- report


def git_head() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def dirty() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--",
                              "mnist_experiments", "conf"],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""
    return ", with uncommitted changes" if out.strip() else ""


def machine() -> Dict[str, str]:
    cpu, flags = platform.processor() or platform.machine(), []
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            flags = line.split(":", 1)[1].split()
    simd = [f for f in flags if re.match(r"(sse|ssse|avx|fma|amx|f16c)", f)]
    caches = []
    for idx in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            caches.append(f"L{(idx / 'level').read_text().strip()}"
                          f"{(idx / 'type').read_text().strip()[0].lower()} "
                          f"{(idx / 'size').read_text().strip()}")
        except OSError:
            pass

    def v(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "-"

    return {"cpu": cpu, "nproc": str(len(os.sched_getaffinity(0))), "simd": " ".join(simd),
            "caches": ", ".join(caches), "python": platform.python_version(),
            "tensorflow": v("tensorflow-cpu") if v("tensorflow-cpu") != "-" else v("tensorflow"),
            "keras": v("keras"), "mlflow": v("mlflow"), "numpy": v("numpy"),
            "kernel": platform.release()}


def env_text(rec: Dict[str, Any]) -> str:
    bits = [f"{k}={v}" for k, v in rec["env"].items()]
    if rec.get("taskset"):
        bits.insert(0, f"taskset -c {rec['taskset']}")
    return " ".join(bits) or "(none)"


def classes(runs: List[Dict[str, Any]], key: str = "test_loss") -> Dict[str, str]:
    """Label every distinct value with a letter, in order of first appearance."""
    out: Dict[str, str] = {}
    for rec in runs:
        val = repr(rec[key])
        if val not in out:
            out[val] = chr(ord("A") + len(out)) if len(out) < 26 else f"#{len(out)}"
    return out


def render_threads(data: Dict[str, Any]) -> List[str]:
    runs = data["runs"]
    cls = classes(runs)
    lines = ["## 1. Threads (`data=digits train.epochs=3`)", "",
             "Identical results share a class letter (same `repr` of `test_loss`, i.e. "
             "bit-identical float64 as stored by MLflow).", "",
             "| setting | environment | test_loss (repr) | test_accuracy | class | fit s |",
             "|:--|:--|:--|--:|:-:|--:|"]
    for rec in runs:
        lines.append(f"| {rec['label']} | `{env_text(rec)}` | `{rec['test_loss']!r}` | "
                     f"{rec['test_accuracy']:.4f} | **{cls[repr(rec['test_loss'])]}** | "
                     f"{rec.get('fit_seconds', float('nan')):.2f} |")
    lines.append("")
    groups: Dict[str, List[str]] = {}
    for rec in runs:
        groups.setdefault(cls[repr(rec["test_loss"])], []).append(rec["label"])
    lines.append("Classes: " + "; ".join(f"**{c}** = {', '.join(labels)}"
                                          for c, labels in groups.items()) + ".")
    lines.append("")
    return lines


def render_onednn(data: Dict[str, Any], reference: Optional[Dict[str, Any]]) -> List[str]:
    lines = ["## 2. oneDNN and the instruction set", "",
             "### Micro-probe (one conv2d, its weight gradient and a 256x512x256 matmul; "
             "`ONEDNN_VERBOSE=1`)", "",
             "| setting | oneDNN ops on (`IsMklEnabled`) | ISA oneDNN reports | oneDNN primitives "
             "executed (kind:implementation x count) | sum(conv) | sum(grad²) | sum(matmul²) |",
             "|:--|:-:|:--|:--|:--|:--|:--|"]
    for p in data["probes"]:
        prims = ", ".join(f"{k} x{v}" for k, v in sorted(p["primitives"].items())) or "none"
        lines.append(f"| {p['label']} | {p.get('onednn_on')} | {p.get('isa', '-')} | {prims} | "
                     f"`{p.get('conv')}` | `{p.get('grad')}` | `{p.get('matmul')}` |")
    lines.append("")
    runs = list(data["runs"])
    ref_runs = []
    if reference:
        ref_runs = [dict(r, label=f"(threads part) {r['label']}") for r in reference["runs"]
                    if r["label"] in ("default", "intra=1 inter=1", "taskset -c 0")]
    cls = classes(ref_runs + runs)
    lines += ["### Training runs (`data=digits train.epochs=3`)", "",
              "Class letters as in part 1 (computed over these rows and the threads part's "
              "default, `intra=1 inter=1` and `taskset -c 0` rows, shown first).", "",
              "| setting | environment | test_loss (repr) | test_accuracy | class | fit s |",
              "|:--|:--|:--|--:|:-:|--:|"]
    for rec in ref_runs + runs:
        lines.append(f"| {rec['label']} | `{env_text(rec)}` | `{rec['test_loss']!r}` | "
                     f"{rec['test_accuracy']:.4f} | **{cls[repr(rec['test_loss'])]}** | "
                     f"{rec.get('fit_seconds', float('nan')):.2f} |")
    lines.append("")
    return lines


def render_speed(data: Dict[str, Any]) -> List[str]:
    runs = data["runs"]
    labels = list(dict.fromkeys(r["label"] for r in runs))  # as stored, in run order
    by = {(r["round"], r["label"]): r for r in runs}
    rounds = sorted({r["round"] for r in runs})
    lines = ["## 3. Speed (Fashion-MNIST, 8,000 training images, 3 epochs, batch 64)", "",
             f"`mnist-exp {' '.join(fashion_args('<fashion>'))}`; interleaved "
             f"{', '.join(l.split(':')[0] for l in labels)} per round, {len(rounds)} rounds, "
             "after one unmeasured warm-up run. `fit_seconds` is the run's own metric "
             "(Keras `fit`, 3 epochs with validation).", "",
             "| round | " + " | ".join(f"{l} fit s" for l in labels) + " | " +
             " | ".join(f"{l.split(':')[0]}/A" for l in labels[1:]) + " | load1 |",
             "|--:|" + "--:|" * (2 * len(labels) - 1) + "--:|"]
    ratios: Dict[str, List[float]] = {l: [] for l in labels[1:]}
    for i in rounds:
        a = by[(i, labels[0])]["fit_seconds"]
        row = [f"{by[(i, l)]['fit_seconds']:.2f}" for l in labels]
        for l in labels[1:]:
            ratios[l].append(by[(i, l)]["fit_seconds"] / a)
        loads = [by[(i, l)]["load1"] for l in labels]
        lines.append(f"| {i} | " + " | ".join(row) + " | " +
                     " | ".join(f"{ratios[l][-1]:.3f}" for l in labels[1:]) +
                     f" | {min(loads):.2f}-{max(loads):.2f} |")
    lines.append("| **median** | " + " | ".join(
        f"{statistics.median(by[(i, l)]['fit_seconds'] for i in rounds):.2f}" for l in labels) +
        " | " + " | ".join(f"**{statistics.median(ratios[l]):.3f}**" for l in labels[1:]) + " | |")
    lines.append("")
    lines.append("Noise: the same setting's `fit_seconds` across rounds (max/min - 1): " + "; ".join(
        f"{l.split(':')[0]} {max(v) / min(v) - 1:.1%}" for l in labels
        for v in [[by[(i, l)]['fit_seconds'] for i in rounds]]) +
        "; ratio range per candidate: " + "; ".join(
        f"{l.split(':')[0]}/A {min(ratios[l]):.3f}-{max(ratios[l]):.3f}" for l in labels[1:]) + ".")
    lines.append("")
    lines.append("Process CPU seconds (user + sys, whole run incl. imports; contention inflates "
                 "wall time more than CPU time): " + "; ".join(
                     f"{l.split(':')[0]} " + ", ".join(f"{by[(i, l)]['cpu_s']:.1f}" for i in rounds)
                     for l in labels) + ".")
    lines.append("")
    cls = classes(runs)
    lines.append("Test metrics of these runs (seed 42; a class letter per distinct `test_loss`): " +
                 "; ".join(f"{l.split(':')[0]} " + ", ".join(
                     f"{by[(i, l)]['test_accuracy']:.4f}/{cls[repr(by[(i, l)]['test_loss'])]}"
                     for i in rounds) for l in labels) + ".")
    lines.append("")
    return lines


KS = [("95%", 0.975), ("99%", 0.995), ("99.9%", 0.9995)]


def render_spread(data: Dict[str, Any]) -> List[str]:
    lines = ["## 4. Spread over seeds (default settings)", "",
             "| data | seeds | metric | mean | std | min | max |",
             "|:--|:--|:--|--:|--:|--:|--:|"]
    sets = [("digits, 3 epochs", data["digits"]), ("Fashion subset (8,000), 3 epochs", data["fashion"])]
    for name, runs in sets:
        seeds = f"{runs[0]['seed']}..{runs[-1]['seed']}"
        for metric in ("test_accuracy", "test_loss"):
            d = describe([r[metric] for r in runs])
            lines.append(f"| {name} | {seeds} | {metric} | {d['mean']:.4f} | {d['std']:.4f} | "
                         f"{d['min']:.4f} | {d['max']:.4f} |")
    lines.append("")
    for name, runs in sets:
        lines.append(f"{name}, per seed (test_accuracy / test_loss): " + ", ".join(
            f"{r['seed']}: {r['test_accuracy']:.4f}/{r['test_loss']:.4f}" for r in runs) + ".")
        lines.append("")

    n = 5
    lines += ["## 5. Verdict rule: false alarms", "",
              f"Rule: the original metric is CONSISTENT if it lies within mean ± k·s·√(1+1/n) "
              f"of n = {n} re-runs with other seeds (s: sample std), k the Student-t quantile "
              f"with n-1 = {n - 1} degrees of freedom (two-sided). Each seed's run in turn is "
              f"the original, against **every** {n}-subset of the other runs (exhaustive). "
              "If the metric were normal and the runs independent, the flagged fraction would "
              "be 5% / 1% / 0.1%.", "",
              "| data | metric | level | k | flagged (false alarms) | trials |",
              "|:--|:--|:--|--:|--:|--:|"]
    for name, runs in sets:
        if len(runs) <= n:
            continue
        for metric in ("test_accuracy", "test_loss"):
            vals = [r[metric] for r in runs]
            for level, p in KS:
                k = t_quantile(p, n - 1)
                frac, total = false_alarms(vals, n, k)
                lines.append(f"| {name} | {metric} | {level} | {k:.3f} | {frac:.2%} | {total} |")
    lines.append("")
    digits_acc = [r["test_accuracy"] for r in data["digits"]]
    lines += ["Fabricated claim: `test_accuracy = 0.999` on digits, against every 5-subset "
              "of the 20 seed runs (two-sided rule as above):", "",
              "| level | k | flagged | subsets | half-interval: median | min | max |",
              "|:--|--:|--:|--:|--:|--:|--:|"]
    for level, p in KS:
        k = t_quantile(p, n - 1)
        frac, total = claim_flagged(0.999, digits_acc, n, k)
        halves = [k * statistics.stdev(s) * math.sqrt(1 + 1 / n)
                  for s in itertools.combinations(digits_acc, n)]
        lines.append(f"| {level} | {k:.3f} | {frac:.2%} | {total} | {statistics.median(halves):.4f} "
                     f"| {min(halves):.4f} | {max(halves):.4f} |")
    lines.append("")
    lines += ["Variant: one-sided (only a result that is *too good* is flagged: accuracy above "
              "the upper limit, loss below the lower one), k the one-sided t quantile, 4 dof:", "",
              "| level | k | digits accuracy false alarms | digits loss false alarms | "
              "Fashion accuracy false alarms | claim 0.999 flagged |",
              "|:--|--:|--:|--:|--:|--:|"]
    for level, p in (("95%", 0.95), ("99%", 0.99), ("99.9%", 0.999)):
        k = t_quantile(p, n - 1)
        acc = false_alarms(digits_acc, n, k, +1)[0]
        loss = false_alarms([r["test_loss"] for r in data["digits"]], n, k, -1)[0]
        fash = false_alarms([r["test_accuracy"] for r in data["fashion"]], n, k, +1)[0] \
            if len(data["fashion"]) > n else float("nan")
        claim = claim_flagged(0.999, digits_acc, n, k, +1)[0]
        lines.append(f"| {level} | {k:.3f} | {acc:.2%} | {loss:.2%} | {fash:.2%} | {claim:.2%} |")
    lines.append("")
    return lines


def render(parts: Dict[str, Any], info: Dict[str, str], command: str, src: str) -> str:
    lines = ["# Determinism: does a graded result reproduce on another machine?", "",
             f"- Regenerate: `{command}` (parts: `--part threads|onednn|speed|spread|all`; a "
             "single part re-renders the file and keeps the other parts' stored results)",
             f"- Machine: {info['cpu']}, nproc {info['nproc']}; SIMD flags: {info['simd']}; "
             f"caches (cpu0): {info['caches']}",
             f"- Software: Python {info['python']}, TensorFlow {info['tensorflow']}, Keras "
             f"{info['keras']}, MLflow {info['mlflow']}, NumPy {info['numpy']}, Linux {info['kernel']}",
             f"- Package run: {src}",
             "- Every run is a fresh `mnist-exp` process in its own scratch directory with its "
             "own SQLite store; metrics read back with `MlflowClient`. Environment: the "
             "inherited one minus every TF/oneDNN/OMP variable, plus `TF_CPP_MIN_LOG_LEVEL=2`, "
             "then the setting's own variables. Digits runs add `viz.enabled=false "
             "mlflow.log_model=false` (they run after the test metrics; part 1 checks that).", ""]
    if "conclusions" in parts:
        lines += parts["conclusions"]
    ref = parts.get("threads")
    for name, fn in (("threads", render_threads), ("onednn", lambda d: render_onednn(d, ref)),
                     ("speed", render_speed), ("spread", render_spread)):
        if name in parts:
            when = parts[name].get("when", "")
            block = fn(parts[name])
            block.insert(1, f"_Measured {when}._\n" if when else "")
            lines += block
    raw = {k: v for k, v in parts.items() if k != "conclusions"}
    lines += ["<!-- determinism-data", json.dumps(raw, indent=None, sort_keys=True), "-->", ""]
    return "\n".join(lines)


def load_stored(out: Path) -> Dict[str, Any]:
    if not out.exists():
        return {}
    m = re.search(r"<!-- determinism-data\n(.*?)\n-->", out.read_text(), re.S)
    return json.loads(m.group(1)) if m else {}


CONCLUSIONS_MARK = ("<!-- conclusions -->", "<!-- /conclusions -->")


def load_conclusions(out: Path) -> List[str]:
    """Hand-written conclusions between the markers survive a re-render."""
    if not out.exists():
        return []
    text = out.read_text()
    a, b = text.find(CONCLUSIONS_MARK[0]), text.find(CONCLUSIONS_MARK[1])
    if a < 0 or b < 0:
        return []
    return text[a:b + len(CONCLUSIONS_MARK[1])].splitlines() + [""]
