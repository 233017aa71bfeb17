"""The processes that re-run an original: one fresh process per run at a time, as many
at once as the cores hold at the original's thread count (``request`` is the
:class:`~mnist_experiments.workflows.reproduce.run.Request`)."""

from __future__ import annotations

import logging
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Dict, List, Sequence

import keras

from mnist_experiments.config.untrusted import build_config
from mnist_experiments.launch import numerics, signals
from mnist_experiments.launch.context import JobContext
from mnist_experiments.workflows.experiment import run_experiment

MAX_SEED = 2**32 - 1


def jobs_at_once(cfg: Any, request: Any) -> int:
    """Re-runs at a time: ``--jobs``, else as many as the cores hold at the run's threads."""
    threads = int(cfg.train.threads or numerics.available_cores())
    jobs = request.jobs or max(1, numerics.available_cores() // threads)
    return max(1, min(jobs, max(1, request.calibration_runs)))


def worker_pool(cfg: Any, request: Any) -> ProcessPoolExecutor:
    """Fresh processes for the re-runs: each loads TensorFlow with the original's oneDNN
    and ISA settings (read only when TensorFlow loads) and applies its thread count."""
    jobs = jobs_at_once(cfg, request)
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=numerics.apply_environment,
                               initargs=(numerics.environment(cfg.train),))


def calibrate(pool: ProcessPoolExecutor, jobs: int, container: Dict[str, Any],
              request: Any, run_id: str, metrics: Dict[str, float],
              overrides: Sequence[str]):
    """Re-run the config with ``request.calibration_runs`` other seeds, as children of the
    reproduction run; return ``{metric: [values]}`` (the reproduction's own value
    first) and the new run ids."""
    seed = int(container["seed"])
    seeds = [(seed + i) % (MAX_SEED + 1) for i in range(1, request.calibration_runs + 1)]
    print(f"\nNot identical: measuring this config's spread here with {len(seeds)} more "
          f"runs (seeds {seeds[0]}..{seeds[-1]}, {jobs} at a time)", flush=True)
    futures = []
    for s in seeds:
        context = JobContext(launch_dir=request.launch_dir, overrides=[*overrides, f"seed={s}"],
                             tags={"reproduction.calibration_of": run_id,
                                   "reproduction.seed": str(s)},
                             parent_run_id=run_id)
        futures.append(pool.submit(run_in_worker, {**container, "seed": s}, context))
    outcomes = [f.result() for f in futures]
    runs: Dict[str, List[float]] = {k: [float(v)] for k, v in metrics.items()}
    for _, values in outcomes:
        for k, v in values.items():
            runs.setdefault(k, []).append(float(v))
    return runs, [run for run, _ in outcomes]


def run_in_worker(container: Dict[str, Any], context: JobContext):
    """One run of a checked config, in a worker process: ``(run id, final metrics)``."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    cfg = build_config(container, [], "the reproduced config")
    keras.backend.clear_session()
    with signals.handled():  # SIGTERM from the command ends this run KILLED
        outcome = run_experiment(cfg, context)
    return outcome.run_id, outcome.metrics
