"""The notebook-vs-mnist-exp report: per-pair ratios, medians, targets, Markdown."""

from __future__ import annotations

import os
import shlex
import statistics
import sys
from typing import Any, Dict, List, Optional, Sequence

from harness import DEFAULT_SEED, REPO

# The targets.
TARGET_WALL_RATIO = 0.80  # median wall time B/A, full Fashion-MNIST
TARGET_WALL_RATIO_SMALL = 0.85  # ... a student-sized run (--limit, fewer images)
TARGET_FIRST_EPOCH_S = 0.5  # median B − A of the time from launch to the end of epoch 1
TARGET_ACC_PP = 0.5  # |test accuracy B - A|, percentage points
TARGET_RSS_RATIO = 1.3  # median peak RSS B/A
TARGET_HELP_S = 0.5  # mnist-exp --help
TARGET_CFG_S = 1.5  # mnist-exp --cfg job


# ------------------------------------------------------------------------ summary
def _mean(values: Sequence[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def derived(run: Dict[str, Any]) -> Dict[str, Any]:
    """Per-run numbers for the tables: epoch 1, later epochs, before/after training."""
    epochs = run["epoch_s"]
    first = run["first_epoch_from_launch_s"]
    return {
        "epoch1_s": epochs[0],
        "later_epoch_s": _mean(epochs[1:]),
        "fit_s": sum(epochs),
        # launch -> start of epoch 1: interpreter, imports, data, model build, store set-up
        "before_fit_s": first - epochs[0],
        # end of the last epoch -> exit: evaluation, artifacts, run end, interpreter exit
        "after_fit_s": run["wall_s"] - first - sum(epochs[1:]),
    }


def b_timeline(run: Dict[str, Any]) -> Optional[Dict[str, float]]:
    """B's wall time split into phases, from its MLflow run's timestamps and metrics."""
    ml = run.get("mlflow", {})
    run_start = run.get("mlflow_run_start_from_launch_s")
    run_end = run.get("mlflow_run_end_from_launch_s")
    if run_start is None or run_end is None or "total_seconds" not in ml:
        return None
    d = derived(run)
    fit_start = run["first_epoch_from_launch_s"] - d["epoch1_s"]
    fit_end = fit_start + d["fit_s"]
    task_start = run_end - ml["total_seconds"]  # total_seconds: data loading -> end of logging
    artifacts = ml.get("artifact_seconds", 0.0)
    return {
        "start_imports_hydra": task_start,
        "data_and_store": run_start - task_start,
        "run_setup": fit_start - run_start,
        "fit": d["fit_s"],
        "test_predict_metrics": max(0.0, run_end - fit_end - artifacts),
        "artifacts": artifacts,
        "exit": run["wall_s"] - run_end,
    }


TIMELINE_LABELS = {
    "start_imports_hydra": "launch → task start (interpreter, CLI imports, Hydra compose)",
    "data_and_store": ("task start → run start (data loading, TensorFlow/Keras and MLflow "
                       "imports, store creation and experiment set-up)"),
    "run_setup": "run start → epoch 1 starts (params, config, model build, tf.data)",
    "fit": "training (all epochs, validation included)",
    "test_predict_metrics": "test predictions, metrics, run end (besides artifacts)",
    "artifacts": "artifacts (figures, reports, logged model): `artifact_seconds`",
    "exit": "run end → process exit",
}


def summarize(pairs: List[Dict[str, Dict[str, Any]]]) -> Dict[str, Any]:
    ratios = []
    for pair in pairs:
        a, b = pair["A"], pair["B"]
        da, db = derived(a), derived(b)
        ratios.append(
            {
                "wall": b["wall_s"] / a["wall_s"],
                "first_epoch": b["first_epoch_from_launch_s"] / a["first_epoch_from_launch_s"],
                "epoch1": db["epoch1_s"] / da["epoch1_s"],
                "later_epoch": (db["later_epoch_s"] / da["later_epoch_s"]
                                if da["later_epoch_s"] and db["later_epoch_s"] else None),
                "rss": b["peak_rss_mb"] / a["peak_rss_mb"],
                "cpu": b["cpu_s"] / a["cpu_s"] if a.get("cpu_s") else None,
                "acc_pp": 100.0 * (b["test_accuracy"] - a["test_accuracy"]),
                "wall_diff_s": b["wall_s"] - a["wall_s"],
                "first_epoch_diff_s": (b["first_epoch_from_launch_s"]
                                       - a["first_epoch_from_launch_s"]),
            }
        )

    def med(key: str) -> Optional[float]:
        values = [r[key] for r in ratios if r[key] is not None]
        return statistics.median(values) if values else None

    return {"per_pair": ratios, "median": {k: med(k) for k in ratios[0]}}


def _f(value: Optional[float], fmt: str = "{:.2f}") -> str:
    return "n/a" if value is None else fmt.format(value)


def render(report: Dict[str, Any]) -> str:
    m = report["machine"]
    s = report["summary"]
    med = s["median"]
    epochs = report["epochs"]
    lines = [
        "# Benchmark: course notebook (A) vs `mnist-exp experiment=seed_notebook` (B)",
        "",
        f"- Command: `{report['command']}` (in `{report['cwd']}`)",
        f"- Date: {report['date']} (took {report['duration_s'] / 60:.1f} min)",
        f"- Machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), "
        f"{m['memory']} RAM; {m['os']}",
        f"- Load average (1/5/15 min) at start: {report['load_start']}; at end: {report['load_end']}",
        f"- Software: Python {m['python']}, TensorFlow {m['tensorflow']}, Keras {m['keras']}, "
        f"MLflow {m['mlflow']}, Hydra {m['hydra']}, NumPy {m['numpy']}; "
        f"mnist_experiments at {m['commit'] or 'unknown commit'}",
        f"- Data: {report['data']['description']}; {epochs} epoch(s); "
        f"{len(report['pairs'])} pair(s), run alternately A, B, A, B, ...; seed(s) "
        f"{', '.join(str(p['A'].get('seed', DEFAULT_SEED)) for p in report['pairs'])}",
        f"- A: `{shlex.join(_short_cmd(report['pairs'][0]['A']['cmd']))}`",
        f"- B: `{shlex.join(_short_cmd(report['pairs'][0]['B']['cmd']))}` "
        "(all tracking, figures and the logged model on; a fresh SQLite store per run)",
        "",
        "Wall time is measured by the benchmark from launch to exit of each subprocess; "
        "time to first epoch from launch to the end of epoch 1 (validation included); "
        "peak RSS is `wait4`'s `ru_maxrss`.",
        "",
        "## Runs",
        "",
        "| pair | variant | wall s | to 1st epoch s | epoch 1 s | s/epoch (2..E) | before fit s "
        "| after fit s | peak RSS MB | test acc % | CPU s | load |",
        "|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, pair in enumerate(report["pairs"], start=1):
        for variant in ("A", "B"):
            run = pair[variant]
            d = derived(run)
            lines.append(
                f"| {i} | {variant} | {run['wall_s']:.1f} | {run['first_epoch_from_launch_s']:.1f} "
                f"| {d['epoch1_s']:.1f} | {_f(d['later_epoch_s'])} | {d['before_fit_s']:.1f} "
                f"| {d['after_fit_s']:.1f} | {run['peak_rss_mb']:.0f} "
                f"| {100 * run['test_accuracy']:.2f} | {run['cpu_s']:.0f} "
                f"| {_f(run.get('load1_before'), '{:.1f}')}→{_f(run.get('load1_after'), '{:.1f}')} |"
            )
    lines += [
        "",
        "_before fit_: launch to the start of epoch 1 (interpreter, imports, data, model, "
        "MLflow store); _after fit_: end of the last epoch to exit (evaluation, for B also "
        "figures, model logging and run end); _CPU s_: user + system CPU time of the "
        "process; _load_: the machine's 1-minute load average before → after the run "
        f"({report['machine']['usable_cores']} cores: a load above that means other "
        "processes competed for the CPU).",
        "",
        *_epoch_table(report),
        "## B / A per pair",
        "",
        "| pair | seed | wall | to 1st epoch | epoch 1 | s/epoch (2..E) | peak RSS | acc B−A (pp) "
        "| wall B−A s | CPU time |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, (r, pair) in enumerate(zip(s["per_pair"], report["pairs"]), start=1):
        lines.append(
            f"| {i} | {pair['A'].get('seed', DEFAULT_SEED)} | {r['wall']:.3f} | {r['first_epoch']:.3f} | {r['epoch1']:.3f} "
            f"| {_f(r['later_epoch'], '{:.3f}')} | {r['rss']:.3f} | {r['acc_pp']:+.2f} "
            f"| {r['wall_diff_s']:+.1f} | {_f(r.get('cpu'), '{:.3f}')} |"
        )
    lines.append(
        f"| **median** | | **{med['wall']:.3f}** | {med['first_epoch']:.3f} | {med['epoch1']:.3f} "
        f"| {_f(med['later_epoch'], '{:.3f}')} | **{med['rss']:.3f}** | **{med['acc_pp']:+.2f}** "
        f"| {med['wall_diff_s']:+.1f} | {_f(med.get('cpu'), '{:.3f}')} |"
    )
    lines += [
        "",
        "_CPU time_: B's CPU time (user + system) over A's. On a shared machine it is steadier "
        "than wall time, which also counts the time a run waited for the CPU.",
    ]

    lines += [
        "",
        "## Inside B (its MLflow metrics, seconds)",
        "",
        "| pair | wall | total_seconds | fit_seconds | first_epoch_seconds | seconds_per_epoch "
        "| artifact_seconds | wall − total_seconds | fit_seconds − Σ epoch_seconds |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, pair in enumerate(report["pairs"], start=1):
        b = pair["B"]
        ml = b["mlflow"]
        outside = b["wall_s"] - ml["total_seconds"] if "total_seconds" in ml else None
        lines.append(
            f"| {i} | {b['wall_s']:.1f} | {_f(ml.get('total_seconds'))} | {_f(ml.get('fit_seconds'))} "
            f"| {_f(ml.get('first_epoch_seconds'))} | {_f(ml.get('seconds_per_epoch'))} "
            f"| {_f(ml.get('artifact_seconds'))} | {_f(outside)} "
            f"| {_f(ml['fit_seconds'] - sum(b['epoch_s']) if 'fit_seconds' in ml else None)} |"
        )
    timelines = [b_timeline(p["B"]) for p in report["pairs"]]
    timelines = [t for t in timelines if t]
    if timelines:
        a_runs = [derived(p["A"]) for p in report["pairs"]]
        a_phase = {
            "start_imports_hydra": statistics.median([d["before_fit_s"] for d in a_runs]),
            "fit": statistics.median([d["fit_s"] for d in a_runs]),
            "after": statistics.median([d["after_fit_s"] for d in a_runs]),
        }
        lines += [
            "",
            "Where B's wall time goes (median over pairs, seconds; A's comparable phases beside):",
            "",
            "| phase of B | B s | A s |",
            "|:---|---:|---:|",
        ]
        for key, label in TIMELINE_LABELS.items():
            value = statistics.median([t[key] for t in timelines])
            if key == "start_imports_hydra":
                a_text = f"{a_phase['start_imports_hydra']:.1f} (launch → epoch 1 starts, all of it)"
            elif key == "fit":
                a_text = f"{a_phase['fit']:.1f}"
            elif key == "test_predict_metrics":
                a_text = f"{a_phase['after']:.1f} (last epoch → exit, all of it)"
            else:
                a_text = ""
            lines.append(f"| {label} | {value:.1f} | {a_text} |")
    breakdowns = [p["B"]["artifact_breakdown_s"] for p in report["pairs"] if p["B"]["artifact_breakdown_s"]]
    if breakdowns:
        names = sorted({k for b in breakdowns for k in b},
                       key=lambda k: -statistics.median([b.get(k, 0.0) for b in breakdowns]))
        shown = ", ".join(f"{k} {statistics.median([b.get(k, 0.0) for b in breakdowns]):.2f}"
                          for k in names[:8])
        lines += ["", f"Largest artifacts (median s, from `artifact_seconds.json`): {shown}."]
    lines += [
        "",
        "_total_seconds_ counts from data loading to the end of the run's logging; "
        "_wall − total_seconds_ is what B spends outside it (interpreter start-up, imports, "
        "Hydra, run start/end, exit); _fit_seconds − Σ epoch_seconds_ is time inside "
        "`model.fit` but outside every epoch (normally ~0).",
        "",
        "## Command-line start-up",
        "",
        "| command | median s | runs (s) | target | met |",
        "|:---|---:|:---|---:|:---:|",
    ]
    for key, target in (("help", TARGET_HELP_S), ("help_hydra", None), ("cfg_job", TARGET_CFG_S)):
        c = report["cli"].get(key)
        if c:
            runs = ", ".join(f"{t:.2f}" for t in c["times_s"])
            if target is None:  # (the first --help after an install or a config's edit)
                lines.append(f"| `{c['cmd']}`, composed by Hydra (nothing kept) | "
                             f"{c['median_s']:.2f} | {runs} | - | - |")
                continue
            ok = "yes" if c["median_s"] <= target else "**no**"
            lines.append(f"| `{c['cmd']}` | {c['median_s']:.2f} | {runs} | < {target:g} s | {ok} |")

    lines += ["", "## Targets", "", "| target | measured | met |", "|:---|---:|:---:|"]
    for name, value, ok in report["targets"]:
        lines.append(f"| {name} | {value} | {'yes' if ok else '**no**'} |")
    lines.append("")
    return "\n".join(lines)


def _epoch_table(report: Dict[str, Any]) -> List[str]:
    """Every epoch's seconds, run by run: a mean hides an epoch that waited (the notebook's
    epochs end when tf.data's autotuning thread wakes, ~1 s later in some of them)."""
    epochs = max(len(pair[v]["epoch_s"]) for pair in report["pairs"] for v in ("A", "B"))
    lines = ["## Each epoch (seconds)", "",
             "| pair | variant | " + " | ".join(str(e) for e in range(1, epochs + 1)) + " |",
             "|---:|:---|" + "---:|" * epochs]
    for i, pair in enumerate(report["pairs"], start=1):
        for variant in ("A", "B"):
            times = [f"{t:.2f}" for t in pair[variant]["epoch_s"]]
            times += [""] * (epochs - len(times))
            lines.append(f"| {i} | {variant} | " + " | ".join(times) + " |")
    return lines + [""]


def _short_cmd(cmd: Sequence[str]) -> List[str]:
    """A command as a reader would type it: ``python`` for this interpreter, repo-relative paths."""
    out = []
    for part in cmd:
        if part == sys.executable:
            part = "python"
        elif part.startswith(str(REPO) + os.sep):
            part = os.path.relpath(part, REPO)
        out.append(part)
    return out


def targets(report: Dict[str, Any]) -> List[tuple]:
    med = report["summary"]["median"]
    small = "first" in str(report.get("data", {}).get("description", "")) \
        or "digits" in str(report.get("data", {}).get("description", ""))
    wall_target = TARGET_WALL_RATIO_SMALL if small else TARGET_WALL_RATIO
    rows = [
        (f"median wall time B/A <= {wall_target:g}"
         f" ({'a subset' if small else 'the full data'})", f"{med['wall']:.3f}",
         med["wall"] <= wall_target),
    ]
    if med.get("first_epoch_diff_s") is not None:
        rows.append((f"time to the end of epoch 1, B − A <= {TARGET_FIRST_EPOCH_S:g} s (median)",
                     f"{med['first_epoch_diff_s']:+.2f} s",
                     med["first_epoch_diff_s"] <= TARGET_FIRST_EPOCH_S))
    rows += [
        (f"test accuracy within {TARGET_ACC_PP:g} pp (median B−A)",
         f"{med['acc_pp']:+.2f} pp" + (" (B higher)" if med["acc_pp"] > TARGET_ACC_PP else ""),
         abs(med["acc_pp"]) <= TARGET_ACC_PP),
        (f"median peak RSS B/A <= {TARGET_RSS_RATIO:g}", f"{med['rss']:.3f}",
         med["rss"] <= TARGET_RSS_RATIO),
    ]
    for key, label, target in (("help", "`mnist-exp --help`", TARGET_HELP_S),
                               ("cfg_job", "`mnist-exp --cfg job`", TARGET_CFG_S)):
        c = report["cli"].get(key)
        if c:
            rows.append((f"{label} <= {target:g} s (median)", f"{c['median_s']:.2f} s",
                         c["median_s"] <= target))
    return rows
