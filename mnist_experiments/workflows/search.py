"""What an Optuna search found, beyond its leaderboard: which parameters mattered.

At the end of an Optuna sweep, the sweep dir's ``optuna/`` holds and the sweep's parent
run gets (under ``optuna/``):

- ``importances.json`` and the metrics ``importance.<param>``: Optuna's parameter
  importances (fANOVA over the finished trials; pruned ones count with their last
  reported value);
- ``param_importances.png`` and ``parallel_coordinate.png``: Optuna's own matplotlib
  figures (a bar per parameter; one line per trial through its parameters to its
  objective).

Nothing here can fail the sweep: with too few finished trials it says so and skips.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any, Dict

from mlflow.tracking import MlflowClient

from mnist_experiments.launch.files import read_sweep_file

log = logging.getLogger(__name__)
MIN_TRIALS = 3  # importances need a few finished trials with different parameters


def report_study(study: Any, sweep_dir: Path) -> Dict[str, float]:
    """Write and log the importances and figures; return the importances."""
    import optuna
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < MIN_TRIALS:
        log.info("parameter importances need %d complete trials (%d here): skipped",
                 MIN_TRIALS, len(done))
        return {}
    out = Path(sweep_dir) / "optuna"
    out.mkdir(exist_ok=True)
    importances: Dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's matplotlib figures are "experimental"
        try:
            importances = {k: float(v) for k, v in
                           optuna.importance.get_param_importances(study).items()}
        except (RuntimeError, ValueError) as exc:  # e.g. a single value per parameter
            log.info("parameter importances not computed: %s", exc)
        (out / "importances.json").write_text(json.dumps(importances, indent=2))
        from optuna.visualization import matplotlib as optuna_plots

        from mnist_experiments.figures.style import save_png

        figures = {"parallel_coordinate.png": optuna_plots.plot_parallel_coordinate}
        if importances:
            figures["param_importances.png"] = optuna_plots.plot_param_importances
        for name, plot in figures.items():
            try:
                axes = plot(study)
                save_png(axes.figure, out / name)
                import matplotlib.pyplot as plt

                plt.close(axes.figure)
            except Exception as exc:  # noqa: BLE001 - a figure is never worth a sweep
                log.info("%s not drawn: %s", name, exc)
    if importances:
        log.info("parameter importances: %s",
                 ", ".join(f"{k} {v:.2f}" for k, v in importances.items()))
    _log_to_parent(sweep_dir, out, importances)
    return importances


def _log_to_parent(sweep_dir: Path, out: Path, importances: Dict[str, float]) -> None:
    info = read_sweep_file(sweep_dir)
    if not info:
        return
    client = MlflowClient(info["tracking_uri"])
    run_id = info["parent_run_id"]
    for key, value in importances.items():
        client.log_metric(run_id, f"importance.{key}", value)
    for path in sorted(out.iterdir()):
        client.log_artifact(run_id, str(path), "optuna")
