#!/usr/bin/env python
"""Regenerate the README's screenshots of the MLflow UI from a real run.

    .venv/bin/python scripts/screenshots.py            # writes docs/screenshots/*.png

What it does, all on this machine:

1. trains a small real run (``mnist-exp data=digits train.epochs=3``) in a temporary
   directory, which logs to ``./mlflow.db`` and ``./mlruns`` there;
2. starts ``mlflow server`` on 127.0.0.1 (a free port) over that store;
3. opens the run's pages in a headless Chromium (Debian's ``chromium``, driven by
   Playwright: ``pip install -e '.[test]'``, no browser download) and saves:

   - ``mlflow-run-overview.png``: the run's overview (metrics, parameters, logged model);
   - ``mlflow-run-confusion-matrix.png``: the artifacts tab, ``plots/confusion_matrix.png``;
   - ``mlflow-run-activations.png``: the artifacts tab, ``activations/conv1.png``.

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
    find_chromium,
    goto,
    mlflow_page,
    run_page_url,
    wait_for_image,
    wait_for_texts,
)

MAX_BYTES = 400_000


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


def find_run(server: MlflowServer) -> dict:
    experiments = server.post("/api/2.0/mlflow/experiments/search", {"max_results": 100})
    ids = [e["experiment_id"] for e in experiments.get("experiments", [])]
    runs = server.post("/api/2.0/mlflow/runs/search", {"experiment_ids": ids}).get("runs", [])
    if len(runs) != 1:
        sys.exit(f"expected one run in the store, found {len(runs)}")
    return runs[0]["info"]


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
        server_dir = workdir / "server"
        with MlflowServer(f"sqlite:///{workdir.resolve() / 'mlflow.db'}", server_dir,
                          env=quiet_env()) as server:
            print(f"mlflow server at {server.url} (up in {server.startup_seconds:.1f}s)",
                  flush=True)
            run = find_run(server)
            with mlflow_page(exe, width=args.width, height=args.height) as page:
                shoot(server, page, run, args.out)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
