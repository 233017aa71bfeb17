"""``mnist-exp-evaluate``: evaluate a logged model on a test set, as a new MLflow run.

    mnist-exp-evaluate MODEL [data=GROUP] [data.KEY=VALUE ...] [seed=N]
                       [--tracking-uri URI] [--experiment-name NAME] [--run-name NAME]

Which data:

* **No overrides**: the data the model's run was trained with, read from the run's
  ``config.yaml`` artifact (``data.*`` and ``seed``). The test set is then exactly the
  run's test set (the ``data.fingerprint`` tags match) and the metrics reproduce the
  run's ``test_*`` metrics.
* ``data.KEY=VALUE`` / ``seed=N`` only: the run's data config with those keys changed
  (e.g. ``data.limit=null`` to use the whole test set of the same data).
* ``data=GROUP`` (``mnist``, ``fashion_mnist``, ``digits``) with any other overrides:
  exactly the data ``mnist-exp`` would use for the same overrides; nothing is taken
  from the run. ``data=digits data.limit=300`` means what it means for ``mnist-exp``.

The config is composed with Hydra's Compose API from the packaged ``conf/``, so the
overrides are checked by the same schema as ``mnist-exp``'s.

What is logged, as a new run in the experiment ``--experiment-name`` (default
``evaluations``):

* metrics ``test_loss``, ``test_accuracy``, ``test_precision``, ``test_recall``,
  ``test_f1_macro``, ``test_f1_weighted`` (:func:`training.classification_metrics`,
  the very code training uses), linked in MLflow 3 to the logged model (``model_id``)
  and to the test set (a dataset input, context ``test``);
* ``metrics/confusion_matrix.json`` (``labels``, ``class_names``, ``matrix``, as
  training logs it), ``plots/confusion_matrix.png``,
  ``metrics/classification_report.json``, ``config.yaml`` (the data config used),
  ``data.json`` (source, fingerprint, shapes);
* params ``data.*``, ``seed`` and ``model_uri``;
* tags ``evaluated_model_uri``, ``evaluated_model_id``, ``evaluated_run_id``,
  ``evaluated_run_name``, ``data.fingerprint``, ``data.source``,
  ``data.same_as_model_run`` (``true``/``false``/``unknown``), ``run_kind=evaluation``,
  ``mlflow.note.content`` (a description shown in the UI) and the provenance tags of
  training runs (versions, platform, git commit, command line).

Why a separate experiment: an evaluation run has test metrics but no training
parameters, curves or objective, and it may be on other data than its model was trained
on. In the training experiment it would mix into run comparisons and into searches such
as "best run by ``test_accuracy``"; the tags above link the two both ways (search
``tags.evaluated_run_id = '<run id>'``).

Exit status: 0 on success, 2 on an error the user can fix (bad MODEL, no tracking
store, a bad override, unusable data), printed as one paragraph without a traceback.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any, Dict, Optional, Sequence

from mnist_experiments.commands import add_version
from mnist_experiments.errors import ConfigError, UserError
from mnist_experiments.launch import heap, signals

DEFAULT_EXPERIMENT = "evaluations"

EXIT_OK = 0


EXIT_ERROR = 2




_ALLOWED_OVERRIDE = re.compile(r"^(data(\.[A-Za-z_][A-Za-z0-9_]*)?|seed)=")


DESCRIPTION = """\
Evaluate a model logged by mnist-exp on a test set and log the result as a new MLflow
run (test metrics, confusion matrix, classification report, data fingerprint, tags
linking it to the model's run).

Without overrides the model is evaluated on the data its run was trained with, which
reproduces that run's test metrics. data.KEY=VALUE and seed=N change that data config;
data=GROUP starts from scratch, exactly as mnist-exp composes the same overrides."""


EPILOG = """\
MODEL is a run id, runs:/<run id>/model, models:/<name>/<version>,
models:/<name>@<alias>, models:/m-<id> or a local model directory.

examples:
  mnist-exp-evaluate 3f9c...e1                       # the run's own test set
  mnist-exp-evaluate 3f9c...e1 data.limit=null       # the same data, whole test set
  mnist-exp-evaluate models:/digits-cnn@champion data=digits data.limit=300
  mnist-exp-evaluate models:/digits-cnn/2 data=mnist data.path=/data/mnist.npz

exit status: 0 success, 2 error (bad MODEL or override, no tracking store, bad data)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnist-exp-evaluate", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="MODEL", help="the logged model (see below)")
    parser.add_argument("overrides", metavar="OVERRIDE", nargs="*",
                        help="Hydra-style data overrides: data=GROUP, data.KEY=VALUE, seed=N")
    parser.add_argument("--tracking-uri", metavar="URI", default=None,
                        help="MLflow tracking store holding the model; the evaluation run "
                             "is logged there too (default: $MLFLOW_TRACKING_URI, else "
                             "sqlite:///<current dir>/mlflow.db)")
    parser.add_argument("--experiment-name", metavar="NAME", default=DEFAULT_EXPERIMENT,
                        help=f"experiment of the new run (default: {DEFAULT_EXPERIMENT})")
    parser.add_argument("--run-name", metavar="NAME", default=None,
                        help="name of the new run (default: eval <model> on <data>)")
    add_version(parser)
    return parser


# -------------------------------------------------------------------- overrides
def check_overrides(overrides: Sequence[str]) -> None:
    """Refuse anything but ``data=...``, ``data.KEY=...`` and ``seed=...``."""

    bad = [o for o in overrides if not _ALLOWED_OVERRIDE.match(o)]
    if bad:
        raise ConfigError(
            f"Unsupported override(s) {' '.join(bad)}: evaluation only takes the data "
            "to evaluate on, as data=GROUP (mnist, fashion_mnist, digits), "
            "data.KEY=VALUE (e.g. data.limit=500, data.path=/dir/or/file.npz) and seed=N. "
            "The model itself is fixed by MODEL."
        )


def format_report(loaded: Any, outcome: Dict[str, Any], origin: str,
                  experiment_name: str) -> str:
    """The console summary: model, data, a metrics table and the new run id."""
    dataset = outcome["dataset"]
    source_run = outcome["source_run"]
    lines = [f"model    {loaded.uri}"
             + (f"  (run {loaded.run_id}" + (f" '{source_run.info.run_name}'" if source_run else "")
                + ")" if loaded.run_id else "")]
    same = {True: "same data as the model's run", False: "different from the model run's data",
            None: "model run's data unknown"}[outcome["same_data"]]
    lines.append(f"data     {dataset.source}: {len(dataset.y_test)} test images from {origin}; "
                 f"sha256 {dataset.fingerprint[:12]} ({same})")
    lines.append("")
    compare = source_run is not None and outcome["same_data"]
    header = f"{'metric':<18}{'evaluation':>12}" + (f"{'model run':>12}" if compare else "")
    lines.append(header)
    for key, value in outcome["metrics"].items():
        row = f"{key:<18}{value:>12.4f}"
        if compare:
            old = source_run.data.metrics.get(key)
            row += f"{old:>12.4f}" if old is not None else f"{'-':>12}"
        lines.append(row)
    lines.append("")
    lines.append(f"evaluation run {outcome['run_id']} in experiment '{experiment_name}' "
                 f"({outcome['tracking_uri']})")
    return "\n".join(lines)


@signals.stoppable("mnist-exp-evaluate")
def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command; return (and, from the console script, exit with) its status."""
    args = build_parser().parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        check_overrides(args.overrides)
        # heavy (TensorFlow, MLflow): only once the command line is known to be good
        with heap.heavy_imports():
            from mnist_experiments.config.compose import compose_config
            from mnist_experiments.tracking.models import load
            from mnist_experiments.workflows.evaluate import eval_overrides, evaluate

        loaded = load(args.model, tracking_uri=args.tracking_uri)
        overrides, origin, warnings = eval_overrides(loaded.run_config, args.overrides)
        for warning in warnings:
            print(f"mnist-exp-evaluate: warning: {warning}", file=sys.stderr)
        cfg = compose_config(overrides, args.overrides)
        outcome = evaluate(loaded, cfg, overrides, origin, args.experiment_name, args.run_name)
    except UserError as exc:
        print(f"mnist-exp-evaluate: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as exc:
        print(f"mnist-exp-evaluate: stopped by {signals.name_of(exc)} (the run, if started, "
              "is marked KILLED)", file=sys.stderr)
        return signals.exit_status(exc)
    print(format_report(loaded, outcome, origin, args.experiment_name))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
