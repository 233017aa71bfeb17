#!/usr/bin/env python
"""Regenerate the README's screenshots of the MLflow UI from a real run and a real sweep.

    .venv/bin/python scripts/screenshots.py            # writes docs/screenshots/*.png

What it does, all on this machine:

1. trains a small real run (``mnist-exp data=digits train.epochs=3``) and a seed sweep
   (``mnist-exp -m data=digits train.epochs=4 viz=off optimizer=adam,sgd seed=1,2,3``)
   in a temporary directory, which log to ``./mlflow.db`` and ``./mlruns`` there;
2. starts ``mlflow server`` on 127.0.0.1 (a free port) over that store;
3. opens their pages in a headless Chromium (Debian's ``chromium``, driven by
   Playwright: ``pip install -e '.[test]'``, no browser download) and saves:

   - ``mlflow-run-overview.png``: the run's overview (metrics, parameters, logged model);
   - ``mlflow-run-confusion-matrix.png``: the artifacts tab, ``plots/confusion_matrix.png``;
   - ``mlflow-run-activations.png``: the artifacts tab, ``activations/conv1.png``;
   - ``mlflow-sweep-runs.png``: the runs table, the sweep's parent unfolded to its jobs;
   - ``mlflow-sweep-charts.png``: the charts view, ``val_accuracy`` and ``val_loss`` per
     epoch for every job;
   - ``mlflow-sweep-grouped.png``: the runs grouped by ``config_id`` (one row per
     configuration, its seeds under it);
   - ``mlflow-run-datasets.png``: a job's datasets (training, validation, test).

The helpers are shared with ``tests/test_ui.py`` (``tests/ui_helpers.py``).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from ui_helpers import (  # noqa: E402
    MlflowServer,
    expand_run,
    filter_charts,
    find_chromium,
    goto,
    group_runs_by,
    mlflow_page,
    run_page_url,
    runs_page_url,
    wait_for_chart_series,
    wait_for_image,
    wait_for_texts,
)

MAX_BYTES = 400_000
SWEEP = ["-m", "data=digits", "train.epochs=4", "viz=off", "optimizer=adam,sgd", "seed=1,2,3"]


def quiet_env() -> dict:
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update({
        "PYTHONUNBUFFERED": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    })
    return env


def train(workdir: Path, overrides: list[str]) -> None:
    cmd = [sys.executable, "-m", "mnist_experiments", *overrides]
    print(f"training: mnist-exp {' '.join(overrides)}  (in {workdir})", flush=True)
    t0 = time.monotonic()
    result = subprocess.run(cmd, cwd=workdir, env=quiet_env(), capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"training failed ({result.returncode}):\n{result.stderr[-4000:]}")
    print(f"  done in {time.monotonic() - t0:.0f}s", flush=True)


def find_runs(server: MlflowServer) -> tuple:
    """(the single run, the sweep's parent, the sweep's jobs): run infos."""
    experiments = server.post("/api/2.0/mlflow/experiments/search", {"max_results": 100})
    ids = [e["experiment_id"] for e in experiments.get("experiments", [])]
    runs = server.post("/api/2.0/mlflow/runs/search", {"experiment_ids": ids}).get("runs", [])

    def tags(run):
        return {t["key"]: t["value"] for t in run["data"].get("tags", [])}

    parents = [r for r in runs if tags(r).get("sweep") == "true"]
    singles = [r for r in runs if r not in parents and "mlflow.parentRunId" not in tags(r)]
    if len(singles) != 1 or len(parents) != 1:
        sys.exit(f"expected one run and one sweep in the store, found {len(singles)} runs "
                 f"and {len(parents)} sweeps")
    parent = parents[0]["info"]
    jobs = [r["info"] for r in runs if tags(r).get("mlflow.parentRunId") == parent["run_id"]]
    return singles[0]["info"], parent, sorted(jobs, key=lambda j: j["run_name"])


def save_png(data: bytes, path: Path) -> None:
    """Save a screenshot, re-encoded smaller (a 256-colour palette if still too big)."""
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    if buf.tell() > MAX_BYTES:
        buf = io.BytesIO()
        img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE) \
           .save(buf, format="PNG", optimize=True)
    path.write_bytes(buf.getvalue())
    print(f"  wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path} "
          f"({img.width}x{img.height}, {buf.tell() // 1024} KB)", flush=True)


def shoot(server: MlflowServer, page, run: dict, out: Path) -> None:
    """``page``: a Playwright page from ``ui_helpers.mlflow_page``."""
    exp, run_id, name = run["experiment_id"], run["run_id"], run["run_name"]

    goto(page, run_page_url(server.url, exp, run_id))
    needles = [name, "val_accuracy", "test_accuracy", "train.epochs", "Finished"]
    wait_for_texts(page, needles, near=("Logged models (1)", "Ready", 600), timeout=90,
                   settle=1.5)
    save_png(page.screenshot(), out / "mlflow-run-overview.png")

    for path, filename in (("plots/confusion_matrix.png", "mlflow-run-confusion-matrix.png"),
                           ("activations/conv1.png", "mlflow-run-activations.png")):
        goto(page, run_page_url(server.url, exp, run_id, f"artifacts/{path}"))
        wait_for_texts(page, [name, path], timeout=90)
        wait_for_image(page, min_size=100, timeout=60)
        page.wait_for_timeout(1000)  # let the layout settle around the image
        save_png(page.screenshot(), out / filename)


def shoot_sweep(server: MlflowServer, page, parent: dict, jobs: list, out: Path) -> None:
    """The sweep's runs table, its charts, its grouped view and a job's datasets. In that
    order: the UI remembers unfolded runs and the grouping for the next visit."""
    exp, names = parent["experiment_id"], [j["run_name"] for j in jobs]

    goto(page, runs_page_url(server.url, exp))
    wait_for_texts(page, [parent["run_name"], "Dataset"], timeout=90)
    expand_run(page, parent["run_name"], names[0])
    wait_for_texts(page, [*names, "digits-training ("], timeout=60, settle=1.5)
    save_png(page.screenshot(), out / "mlflow-sweep-runs.png")

    goto(page, runs_page_url(server.url, exp, charts=True))
    wait_for_texts(page, ["Model metrics", parent["run_name"]], timeout=90)
    filter_charts(page, "val_accuracy")
    wait_for_chart_series(page, names)  # drawn, every job
    filter_charts(page, "val_")
    wait_for_texts(page, ["val_loss"], timeout=30, settle=2)
    save_png(page.screenshot(), out / "mlflow-sweep-charts.png")

    goto(page, runs_page_url(server.url, exp))
    wait_for_texts(page, [parent["run_name"]], timeout=90)
    group_runs_by(page, "config_id")
    wait_for_texts(page, ["Group by: config_id", "Group: ", *names], timeout=60, settle=1.5)
    save_png(page.screenshot(), out / "mlflow-sweep-grouped.png")

    job = jobs[0]
    goto(page, run_page_url(server.url, exp, job["run_id"]))
    wait_for_texts(page, ["Datasets", "digits-training ("], timeout=90)
    page.get_by_text("digits-training (").first.click()
    wait_for_texts(page, ["datasets used", "features shape"], timeout=60, settle=1)
    save_png(page.screenshot(), out / "mlflow-run-datasets.png")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="train here (default: a temporary directory, removed after)")
    parser.add_argument("--reuse", action="store_true",
                        help="do not train: use the store already in --workdir")
    args = parser.parse_args(argv)

    exe = find_chromium()
    if exe is None:
        sys.exit("no Chromium found: apt-get install chromium")
    args.out.mkdir(parents=True, exist_ok=True)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mnist-screenshots-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        if not args.reuse:
            train(workdir, ["data=digits", f"train.epochs={args.epochs}"])
            train(workdir, SWEEP)
        server_dir = workdir / "server"
        with MlflowServer(f"sqlite:///{workdir.resolve() / 'mlflow.db'}", server_dir,
                          env=quiet_env()) as server:
            print(f"mlflow server at {server.url} (up in {server.startup_seconds:.1f}s)",
                  flush=True)
            run, parent, jobs = find_runs(server)
            with mlflow_page(exe, width=args.width, height=args.height) as page:
                shoot(server, page, run, args.out)
                shoot_sweep(server, page, parent, jobs, args.out)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
