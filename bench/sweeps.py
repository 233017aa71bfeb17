"""Sweeps at speed and at scale: three measurements, each a section of a Markdown report.

    python bench/sweeps.py parallel   # 8-job digits sweep: sequential vs 2 joblib jobs
    python bench/sweeps.py overhead   # 16-job sequential digits sweep: wall vs Σ fit time
    python bench/sweeps.py pruning    # 24-trial Optuna search: pruner=median vs none
    python bench/sweeps.py report     # a 10,000-job sweep's report: complete, how fast
    python bench/sweeps.py all --out bench/results-sweeps.md

- **parallel**: ``mnist-exp -m data=digits train.epochs=3 seed=1..8`` (every job fully
  tracked: figures, model; ``--job-epochs`` sets the epochs) with Hydra's basic launcher
  and with ``hydra/launcher=joblib hydra.launcher.n_jobs=2``, alternating, ``--pairs``
  times, each a fresh process in a fresh directory. Target: sequential / parallel >= 1.6.
- **overhead**: ``mnist-exp -m data=digits train.epochs=3 seed=1..16`` (Hydra's basic
  launcher, model and metrics logged) with ``viz.sweep_figures=all`` (every job draws its
  figures) and ``best`` (only the jobs that lead the sweep when they end), and ``best``
  with ``MNIST_EXP_REUSE_MODELS=0`` (each job traces its own model, as before
  ``training/reuse.py``), ``--pairs`` times. Target: wall time <= 1.3x the sum of the jobs' ``fit_seconds``, every job's
  run complete (FINISHED, metrics, reports, logged model).
- **pruning**: ``mnist-exp -m hparams_search=optuna`` on a Fashion-MNIST subset
  (``--limit`` images, ``--epochs`` epochs, ``viz=off``, no model), ``--trials`` trials,
  the same sampler seed, with ``hydra.sweeper.pruner=median`` (or ``--pruner hyperband``)
  and ``none``, for each of ``--sweeper-seeds`` (default 1; which trial wins one search
  is chance, so several seeds give the spread of the gap). Target: the pruned search's best objective within 0.5
  percentage points of the unpruned one, in at most 60% of its wall time (the medians).
- **report**: a simulated sweep of N finished jobs (a parent run, N child runs with
  their tags, params and metrics, N ``job.json`` records, written with MLflow's client
  into a fresh SQLite store), then ``mnist-exp-report <sweep dir>`` timed, for each N of
  ``--sizes``. Target: all N jobs in ``summary.csv``, under 60 s for 10,000.

Timings are this machine's; run it alone (no other heavy process on the cores).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    DEFAULT_DATA, _check, bench_env, machine_info, measure, missing_data,
)

ROOT = Path(__file__).resolve().parent


def log(message: str) -> None:
    print(f"[sweeps] {message}", file=sys.stderr, flush=True)


def _sweep(args: List[str], workdir: Path, env: Dict[str, str] = None) -> Dict[str, Any]:
    run = measure([sys.executable, "-m", "mnist_experiments", "-m", *args], workdir,
                  {**bench_env(), **(env or {})}, timeout=7200)
    _check(run, " ".join(args))
    return run


def _runs(uri: str) -> List[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


# ----------------------------------------------------------------------------- parallel
def parallel(args: argparse.Namespace, tmp: Path) -> Dict[str, Any]:
    seeds = ",".join(str(s) for s in range(1, args.jobs + 1))
    base = ["data=digits", f"train.epochs={args.job_epochs}", f"seed={seeds}"]
    joblib = [*base, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    variants = {"sequential": (base, {}), "joblib n_jobs=2": (joblib, {})}
    rows = []
    for pair in range(1, args.pairs + 1):
        for index, (name, (overrides, env)) in enumerate(variants.items()):
            workdir = tmp / f"parallel-{pair}-{index}"
            run = _sweep(overrides, workdir, env)
            runs = [r for r in _runs(f"sqlite:///{workdir / 'mlflow.db'}")
                    if r.data.tags.get("sweep") != "true"]
            rows.append({"pair": pair, "variant": name, "wall": run["wall_s"],
                         "jobs": len(runs), "threads": sorted({r.data.params["train.threads"]
                                                               for r in runs}),
                         "fit_sum": sum(r.data.metrics["fit_seconds"] for r in runs)})
            log(f"parallel pair {pair} {name}: {run['wall_s']:.1f} s")
    def median(variant: str) -> float:
        return statistics.median(r["wall"] for r in rows if r["variant"] == variant)

    seq, par = (median(v) for v in variants)
    return {"rows": rows, "sequential_s": seq, "parallel_s": par, "speedup": seq / par,
            "jobs": args.jobs, "epochs": args.job_epochs}


# ----------------------------------------------------------------------------- overhead
def _completeness(uri: str) -> Dict[str, int]:
    """How many job runs are complete: FINISHED, with metrics, reports and a logged model;
    and how many have figures."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = [r for r in _runs(uri) if r.data.tags.get("sweep") != "true"]
    experiments = sorted({r.info.experiment_id for r in runs})
    models = {m.source_run_id for m in client.search_logged_models(experiments)}
    complete = figures = 0
    for r in runs:
        artifacts = {a.path for a in client.list_artifacts(r.info.run_id)}
        if (r.info.status == "FINISHED" and r.info.run_id in models
                and {"objective", "test_accuracy", "fit_seconds"} <= set(r.data.metrics)
                and {"metrics", "model"} <= artifacts):
            complete += 1
        figures += "plots" in artifacts
    return {"jobs": len(runs), "complete": complete, "with_figures": figures,
            "fit_sum": sum(r.data.metrics.get("fit_seconds", 0.0) for r in runs)}


def overhead(args: argparse.Namespace, tmp: Path) -> Dict[str, Any]:
    """A sequential sweep's wall time against the sum of its jobs' fits, with every job
    drawing its figures (``viz.sweep_figures=all``, as before), with only the jobs that
    lead the sweep drawing them (``best``, the default), and ``best`` with each job
    tracing its own model again (``MNIST_EXP_REUSE_MODELS=0``, as before the reuse)."""
    seeds = ",".join(str(s) for s in range(1, args.sequential_jobs + 1))
    base = ["data=digits", f"train.epochs={args.job_epochs}", f"seed={seeds}"]
    variants = {"viz.sweep_figures=all": ("all", {}),
                "best, each job traces its model": ("best", {"MNIST_EXP_REUSE_MODELS": "0"}),
                "viz.sweep_figures=best": ("best", {})}
    rows = []
    for pair in range(1, args.pairs + 1):
        for index, (name, (policy, env)) in enumerate(variants.items()):
            workdir = tmp / f"overhead-{pair}-{index}"
            run = _sweep([*base, f"viz.sweep_figures={policy}"], workdir, env)
            found = _completeness(f"sqlite:///{workdir / 'mlflow.db'}")
            rows.append({"pair": pair, "variant": name, "wall": run["wall_s"], **found,
                         "ratio": run["wall_s"] / found["fit_sum"]})
            log(f"overhead pair {pair} {name}: {run['wall_s']:.1f} s, "
                f"Σfit {found['fit_sum']:.1f} s")
    best = [r for r in rows if r["variant"] == "viz.sweep_figures=best"]
    traced = [r for r in rows if r["variant"].startswith("best, each")]
    return {"rows": rows, "jobs": args.sequential_jobs, "epochs": args.job_epochs,
            "ratio": statistics.median(r["ratio"] for r in best),
            "reuse_wall_ratio": statistics.median(
                b["wall"] / t["wall"] for b, t in zip(best, traced))}


# ------------------------------------------------------------------------------ pruning
def pruning(args: argparse.Namespace, tmp: Path) -> Dict[str, Any]:
    """The same search with and without a pruner (``--pruner``, median by default), for
    each sweeper seed: which trial wins a 24-trial search is chance, so one search per
    variant decides the accuracy gap by a single trial; several seeds give its spread
    and median."""
    import optuna

    base = ["hparams_search=optuna", "data=fashion_mnist", f"data.path={args.data}",
            f"data.limit={args.limit}", f"train.epochs={args.epochs}", "viz=off",
            "mlflow.log_model=false", f"hydra.sweeper.n_trials={args.trials}"]
    if args.warmup_epochs is not None:
        base.append(f"hydra.sweeper.warmup_epochs={args.warmup_epochs}")
    searches = []
    for seed in args.sweeper_seeds:
        search: Dict[str, Any] = {"seed": seed}
        for pruner in ("none", args.pruner):
            workdir = tmp / f"pruning-{seed}-{pruner}"
            run = _sweep([*base, f"hydra.sweeper.seed={seed}",
                          f"hydra.sweeper.pruner={pruner}"], workdir)
            (sweep_dir,) = (workdir / "outputs" / "multirun").iterdir()
            study = optuna.load_study(study_name=f"mnist-exp-{sweep_dir.name}",
                                      storage=f"sqlite:///{workdir / 'optuna.db'}")
            states = [t.state.name for t in study.trials]
            epochs = sum(len(t.intermediate_values) for t in study.trials)
            search[pruner] = {"wall": run["wall_s"], "best": study.best_value,
                              "complete": states.count("COMPLETE"),
                              "pruned": states.count("PRUNED"), "epochs_trained": epochs}
            log(f"pruning seed {seed} {pruner}: {run['wall_s']:.1f} s, best "
                f"{study.best_value:.4f}, {states.count('PRUNED')} pruned")
        search["time_ratio"] = search[args.pruner]["wall"] / search["none"]["wall"]
        search["best_gap_pp"] = 100 * (search["none"]["best"] - search[args.pruner]["best"])
        searches.append(search)
    return {"trials": args.trials, "epochs": args.epochs, "limit": args.limit,
            "pruner": args.pruner, "warmup_epochs": args.warmup_epochs, "searches": searches,
            "time_ratio": statistics.median(s["time_ratio"] for s in searches),
            "best_gap_pp": statistics.median(s["best_gap_pp"] for s in searches)}


# ------------------------------------------------------------------------------- report
def simulate(workdir: Path, n: int) -> Path:
    """A finished sweep of ``n`` jobs, as mnist-exp would have left it."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from mnist_experiments.launch.files import write_job_record, write_sweep_file
    from mnist_experiments.tracking.runs import ensure_experiment

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    experiment_id = ensure_experiment(uri, "mnist-experiments")
    client = MlflowClient(uri)
    sweep_dir = workdir / "outputs" / "multirun" / "simulated"
    sweep_dir.mkdir(parents=True)
    parent = client.create_run(experiment_id, run_name="sweep-simulated",
                               tags={"sweep": "true", "sweep.dir": str(sweep_dir)})
    parent_id = parent.info.run_id
    write_sweep_file(sweep_dir, {
        "planned_jobs": n, "register_as": "", "register_alias": "", "tracking_uri": uri,
        "experiment_id": experiment_id, "parent_run_id": parent_id,
        "sweep_dir": str(sweep_dir), "overrides": ["data=digits", f"seed=range(0,{n})"]})
    now = int(time.time() * 1000)
    for job in range(n):
        config_id = f"{job % 10:012d}"
        overrides = ["data=digits", f"optimizer.learning_rate={0.001 * (1 + job % 10)}",
                     f"seed={job // 10}"]
        run = client.create_run(experiment_id, run_name=",".join(overrides[1:]), tags={
            "mlflow.parentRunId": parent_id, "sweep.job_num": str(job),
            "overrides": " ".join(overrides), "config_id": config_id})
        objective = 0.9 + 0.005 * (job % 10) + 0.0001 * (job % 7)
        metrics = {"objective": objective, "test_accuracy": objective - 0.01,
                   "test_loss": 1 - objective, "test_f1_macro": objective - 0.02}
        client.log_batch(run.info.run_id,
                         metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
                         params=[Param("seed", str(job // 10))],
                         tags=[RunTag("mnist_exp.simulated", "true")])
        client.set_terminated(run.info.run_id, "FINISHED")
        job_dir = sweep_dir / str(job)
        job_dir.mkdir()
        write_job_record(job_dir, {"job": str(job), "overrides": overrides,
                                   "status": "FINISHED", "error": None,
                                   "objective": objective, "parent_run_id": parent_id,
                                   "config_id": config_id})
    client.set_terminated(parent_id, "FINISHED")
    return sweep_dir


def report(args: argparse.Namespace, tmp: Path) -> Dict[str, Any]:
    rows = []
    for n in args.sizes:
        workdir = tmp / f"report-{n}"
        workdir.mkdir()
        t0 = time.perf_counter()
        sweep_dir = simulate(workdir, n)
        built = time.perf_counter() - t0
        run = measure([sys.executable, "-m", "mnist_experiments.commands.report",
                       str(sweep_dir), "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}",
                       "--out", str(workdir / "report")], workdir, bench_env(), timeout=3600)
        _check(run, f"mnist-exp-report ({n} jobs)")
        with open(workdir / "report" / "summary.csv") as fh:
            listed = len(list(csv.DictReader(fh)))
        rows.append({"jobs": n, "listed": listed, "wall": run["wall_s"], "simulate_s": built})
        log(f"report {n} jobs: {run['wall_s']:.1f} s, {listed} listed (store built in "
            f"{built:.0f} s)")
    return {"rows": rows}


# ------------------------------------------------------------------------------- render
def _meets_pruning_target(r: Dict[str, Any]) -> bool:
    """At most 60% of the unpruned search's wall time, its best within 0.5 pp."""
    return r["time_ratio"] <= 0.6 and r["best_gap_pp"] <= 0.5


def _ints(text: str) -> List[int]:
    """A comma-separated list of integers: ``1,2,3``."""
    return [int(x) for x in text.split(",")]


def render(results: Dict[str, Any], command: str) -> str:
    m = results["machine"]
    out = ["# Sweeps: parallel jobs, pruning, reports at scale", "",
           f"`{command}` on {m.get('cpu', '?')}, {m.get('cores', '?')} cores, "
           f"TensorFlow {m.get('tensorflow', '?')}, {results['date']}.", ""]
    if "parallel" in results:
        p = results["parallel"]
        out += [f"## Parallel jobs: {p['jobs']}-job digits sweep, {p.get('epochs', 3)} epochs, "
                "fully tracked", "",
                "| pair | launcher | wall s | jobs | threads per job | Σ fit_seconds |",
                "|---|---|---|---|---|---|"]
        out += [f"| {r['pair']} | {r['variant']} | {r['wall']:.1f} | {r['jobs']} | "
                f"{', '.join(r['threads'])} | {r['fit_sum']:.1f} |" for r in p["rows"]]
        ok = "met" if p["speedup"] >= 1.6 else "NOT met"
        out += ["", f"Median wall: sequential {p['sequential_s']:.1f} s, joblib "
                f"{p['parallel_s']:.1f} s: **{p['speedup']:.2f}x** (target >= 1.6x: {ok}).", ""]
    if "overhead" in results:
        o = results["overhead"]
        out += [f"## Sweep overhead: sequential {o['jobs']}-job digits sweep, "
                f"{o.get('epochs', 3)} epochs per job, "
                "model and metrics logged", "",
                "| pair | figures | wall s | Σ fit_seconds | wall / Σ fit | jobs complete | "
                "jobs with figures |", "|---|---|---|---|---|---|---|"]
        out += [f"| {r['pair']} | {r['variant']} | {r['wall']:.1f} | {r['fit_sum']:.1f} | "
                f"{r['ratio']:.2f} | {r['complete']} of {r['jobs']} | {r['with_figures']} |"
                for r in o["rows"]]
        ok = "met" if o["ratio"] <= 1.3 else "NOT met"
        out += ["", f"Wall / Σ fit_seconds with `viz.sweep_figures=best`: "
                f"**{o['ratio']:.2f}** (target <= 1.3: {ok}). A job is complete when its run "
                "is FINISHED with its metrics, reports and logged model."]
        if "reuse_wall_ratio" in o:
            out += ["", "Jobs that reuse the previous job's compiled model "
                    "(`mnist_experiments/training/reuse.py`) against jobs that each trace "
                    f"their own (`MNIST_EXP_REUSE_MODELS=0`): wall time "
                    f"**{o['reuse_wall_ratio']:.2f}**x. The reuse shortens the fits "
                    "themselves (their first epoch no longer traces), so it lowers the "
                    "wall time and Σ fit_seconds alike and does not improve the ratio above."]
        out += [""]
    if "pruning" in results:
        r = results["pruning"]
        searches = r.get("searches") or [{"seed": 1, **r}]  # (one search: older JSON)
        pruner = r.get("pruner", "median")  # (older JSON: always the median pruner)
        warmup = r.get("warmup_epochs")
        pruner_name = pruner + (f", warm-up {warmup} epochs" if warmup is not None else "")
        out += [f"## Pruning ({pruner_name}): {r['trials']}-trial "
                f"Optuna search, Fashion-MNIST {r['limit']} images, {r['epochs']} epochs "
                "per trial", "",
                "| sweeper seed | pruner | wall s | best objective | complete | pruned | "
                "epochs trained |", "|---|---|---|---|---|---|---|"]
        for search in searches:
            for name in ("none", pruner):
                s = search[name]
                out.append(f"| {search['seed']} | {name} | {s['wall']:.1f} | {s['best']:.4f} | "
                           f"{s['complete']} | {s['pruned']} | {s['epochs_trained']} |")
        out += ["", "| sweeper seed | pruned / unpruned wall time | best objective behind |",
                "|---|---|---|"]
        out += [f"| {s['seed']} | {s['time_ratio']:.2f} | {s['best_gap_pp']:+.2f} pp |"
                for s in searches]
        ok = "met" if _meets_pruning_target(r) else "NOT met"
        both = sum(_meets_pruning_target(s) for s in searches)
        out += ["", f"Median over {len(searches)} search(es): pruned / unpruned wall time "
                f"**{r['time_ratio']:.2f}**, best objective {r['best_gap_pp']:+.2f} pp behind "
                f"(target <= 0.60 and <= 0.5 pp: {ok}); {both} of {len(searches)} "
                "search(es) meet both.", ""]
    if "report" in results:
        rows = results["report"]["rows"]
        out += ["## A sweep's report at scale (`mnist-exp-report`, simulated sweeps)", "",
                "| jobs | listed in summary.csv | report wall s | s per 1,000 jobs |",
                "|---|---|---|---|"]
        out += [f"| {r['jobs']:,} | {r['listed']:,} | {r['wall']:.1f} | "
                f"{1000 * r['wall'] / r['jobs']:.2f} |" for r in rows]
        out.append("")
    return "\n".join(out) + "\n"


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["parallel", "overhead", "pruning", "report", "all"])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--sequential-jobs", type=int, default=16,
                        help="jobs of the overhead measurement's sweep")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--job-epochs", type=int, default=3,
                        help="parallel, overhead: epochs of each job (the fixed start-up "
                             "weighs less in longer jobs)")
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--pruner", choices=["median", "hyperband"], default="median",
                        help="the pruner measured against none (pruning)")
    parser.add_argument("--warmup-epochs", type=int, default=None,
                        help="pruning: hydra.sweeper.warmup_epochs (default: the sweeper's)")
    parser.add_argument("--sweeper-seeds", type=_ints,
                        default=[1], help="pruning: one search per variant for each seed")
    parser.add_argument("--epochs", type=int, default=8,
                        help="pruning: epochs of each trial (a pruned trial stops after a "
                             "few, whatever the trial's length)")
    parser.add_argument("--limit", type=int, default=6000)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--sizes", type=_ints,
                        default=[1000, 3000, 10000])
    parser.add_argument("--out", type=Path, default=None,
                        help="write the Markdown here (and the numbers beside it, .json)")
    args = parser.parse_args(argv)
    steps = ["parallel", "overhead", "pruning", "report"] if args.what == "all" else [args.what]
    problem = missing_data(args.data, "--data") if "pruning" in steps else None
    if problem:
        print(f"sweeps.py: error: {problem}", file=sys.stderr)
        return 2
    results: Dict[str, Any] = {"machine": machine_info(),
                               "date": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory(prefix="bench-sweeps-") as tmp:
        for step in steps:
            results[step] = globals()[step](args, Path(tmp))
    text = render(results, "python bench/sweeps.py " + " ".join(sys.argv[1:] if argv is None
                                                                   else argv))
    print(text)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
