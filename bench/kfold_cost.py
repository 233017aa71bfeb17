"""Does a k-fold run cost more than k single fits? (target: at most k single fits + 5%)

Runs, alternating, for ``--rounds`` rounds:

* K: one ``mnist-exp cv=kfold cv.folds=k cv.refit=false`` run on the first N images;
* S: k single ``mnist-exp`` runs whose fits have the size of one fold (the same N
  images, ``data.val_fraction=1/k``: train on (k-1)/k, validate on 1/k).

Each run is a fresh process with a fresh MLflow store. It reports wall time (K's one
process vs the k processes of S), MLflow's ``total_seconds`` (K's parent run vs the sum
of S's runs; it counts from data loading to the run's end, so the TensorFlow import is
in it once for K and k times for S) and the fits alone (Σ ``fit_seconds``: K's fold runs
vs S's runs), with the ratios K/S, as Markdown on stdout::

    python bench/kfold_cost.py                       # Fashion-MNIST, 15,000 images, 3 folds
    python bench/kfold_cost.py --limit 6000 --folds 5 --epochs 1 --rounds 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    DEFAULT_DATA,
    _check,
    bench_env,
    machine_info,
    measure,
)


def _runs(uri: str) -> List[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids)


def run_cli(args: List[str], workdir: Path) -> Dict[str, Any]:
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    run = measure([sys.executable, "-m", "mnist_experiments", *args,
                   f"mlflow.tracking_uri={uri}"], workdir, bench_env(), timeout=3600)
    _check(run, " ".join(args))
    runs = _runs(uri)
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    fits = children or parent
    run["total_seconds"] = float(parent[0].data.metrics["total_seconds"])
    run["fit_seconds"] = sum(float(r.data.metrics["fit_seconds"]) for r in fits)
    return run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-path", default=DEFAULT_DATA)
    parser.add_argument("--data-config", default="fashion_mnist")
    parser.add_argument("--limit", type=int, default=15000)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)

    common = [f"data={args.data_config}", f"data.path={args.data_path}",
              f"data.limit={args.limit}", f"train.epochs={args.epochs}",
              "optimizer=adam", "train.batch_size=256"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="mnist-kfold-cost-") as tmp:
        for r in range(1, args.rounds + 1):
            k = run_cli([*common, "cv=kfold", f"cv.folds={args.folds}", "cv.refit=false"],
                        Path(tmp) / f"{r}-K")
            singles = [run_cli([*common, f"data.val_fraction={1 / args.folds:.6f}", f"seed={s}"],
                               Path(tmp) / f"{r}-S{s}") for s in range(1, args.folds + 1)]
            row = {
                "round": r,
                "K_wall": k["wall_s"], "S_wall": sum(s["wall_s"] for s in singles),
                "K_total": k["total_seconds"], "S_total": sum(s["total_seconds"] for s in singles),
                "K_fit": k["fit_seconds"], "S_fit": sum(s["fit_seconds"] for s in singles),
            }
            for what in ("wall", "total", "fit"):
                row[f"{what}_ratio"] = row[f"K_{what}"] / row[f"S_{what}"]
            rows.append(row)
            print(f"round {r}: " + ", ".join(f"{k}={v:.3f}" for k, v in row.items() if k != "round"),
                  file=sys.stderr, flush=True)

    info = machine_info()
    print(f"# k-fold cost: {args.folds} folds vs {args.folds} single fits\n")
    print(f"- Command: `python bench/kfold_cost.py {' '.join(sys.argv[1:])}`".rstrip())
    print(f"- Machine: {info['cpu']}, {info['usable_cores']} cores; TensorFlow {info['tensorflow']}, "
          f"MLflow {info['mlflow']}; mnist_experiments at {info['commit']}")
    print(f"- Each: `{' '.join(common)}`; K adds `cv=kfold cv.folds={args.folds} cv.refit=false`, "
          f"each S run `data.val_fraction=1/{args.folds}` (a fit the size of one fold)\n")
    print("| round | K wall s | S wall s (Σ) | K/S | K total_seconds | S total_seconds (Σ) | K/S "
          "| K Σ fit s | S Σ fit s | K/S |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['round']} | {row['K_wall']:.1f} | {row['S_wall']:.1f} | {row['wall_ratio']:.3f} "
              f"| {row['K_total']:.1f} | {row['S_total']:.1f} | {row['total_ratio']:.3f} "
              f"| {row['K_fit']:.1f} | {row['S_fit']:.1f} | {row['fit_ratio']:.3f} |")
    medians = {w: statistics.median(r[f"{w}_ratio"] for r in rows) for w in ("wall", "total", "fit")}
    print(f"| **median** | | | **{medians['wall']:.3f}** | | | **{medians['total']:.3f}** | | "
          f"| **{medians['fit']:.3f}** |")
    met = medians["wall"] <= 1.05 and medians["fit"] <= 1.05
    print(f"\nTarget: a k-fold run costs at most k single fits + 5% (median K/S <= 1.05 for "
          f"the wall time and for the fits alone): {'met' if met else 'NOT met'}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
