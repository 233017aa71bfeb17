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
from dataclasses import fields

from mnist_experiments.config.compose import compose_config, hydra_value
from typing import Any, Dict, List, Optional, Sequence, Tuple

EXIT_OK = 0
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
DEFAULT_EXPERIMENT = "evaluations"

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
    return parser


# -------------------------------------------------------------------- overrides
def check_overrides(overrides: Sequence[str]) -> None:
    """Refuse anything but ``data=...``, ``data.KEY=...`` and ``seed=...``."""
    from mnist_experiments.errors import ConfigError

    bad = [o for o in overrides if not _ALLOWED_OVERRIDE.match(o)]
    if bad:
        raise ConfigError(
            f"Unsupported override(s) {' '.join(bad)}: evaluation only takes the data "
            "to evaluate on, as data=GROUP (mnist, fashion_mnist, digits), "
            "data.KEY=VALUE (e.g. data.limit=500, data.path=/dir/or/file.npz) and seed=N. "
            "The model itself is fixed by MODEL."
        )


def data_groups() -> List[str]:
    """The options of the packaged ``data`` config group (``mnist``, ``digits``, ...)."""
    from importlib import resources

    folder = resources.files("mnist_experiments.conf").joinpath("data")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def run_data_overrides(run_config: Optional[Dict[str, Any]]) -> Tuple[List[str], List[str]]:
    """Overrides that recompose a run's data config and seed; and the keys skipped."""
    from mnist_experiments.config.schema import DataConfig

    if not run_config or not isinstance(run_config.get("data"), dict):
        return [], []
    data = run_config["data"]
    known = [f.name for f in fields(DataConfig)]
    overrides = []
    if data.get("name") in data_groups():
        overrides.append(f"data={data['name']}")
    overrides += [f"data.{key}={hydra_value(data[key])}" for key in known if key in data]
    if run_config.get("seed") is not None:
        overrides.append(f"seed={hydra_value(run_config['seed'])}")
    skipped = [key for key in data if key not in known]
    return overrides, skipped


def eval_overrides(run_config: Optional[Dict[str, Any]],
                   user: Sequence[str]) -> Tuple[List[str], str, List[str]]:
    """The overrides to compose, where the data config comes from, and warnings."""
    warnings: List[str] = []
    if any(o.split("=", 1)[0] == "data" for o in user):
        return list(user), "your overrides (data=GROUP: as mnist-exp composes them)", warnings
    base, skipped = run_data_overrides(run_config)
    if skipped:
        warnings.append(f"the model run's data config has key(s) {', '.join(skipped)} that "
                        "this version does not know; they are ignored.")
    if not base:
        warnings.append("the model's run has no config.yaml to take the data from: "
                        "evaluating on the default data (data=mnist) plus your overrides. "
                        "Give data=GROUP to choose.")
        return list(user), "the default config" + (" with your overrides" if user else ""), warnings
    origin = "the model run's data config" + (" with your overrides" if user else "")
    return base + list(user), origin, warnings


# ------------------------------------------------------------------- evaluation
def _short(loaded: Any) -> str:
    uri = loaded.uri
    if uri.startswith("runs:/"):
        return uri[len("runs:/"):].split("/", 1)[0][:8]
    if uri.startswith("models:/"):
        return uri[len("models:/"):]
    return os.path.basename(uri.rstrip("/")) or uri


def evaluate(loaded: Any, cfg: Any, overrides: Sequence[str], origin: str,
             experiment_name: str = DEFAULT_EXPERIMENT, run_name: Optional[str] = None,
             launch_dir: Optional[str] = None) -> Dict[str, Any]:
    """Evaluate ``loaded`` on the test set of ``cfg.data`` and log a new run.

    Returns a dict with ``run_id``, ``experiment_id``, ``metrics``, ``dataset`` and
    ``source_run`` (the model's run, or None) and ``same_data`` (bool or None).
    """
    from omegaconf import OmegaConf

    from mnist_experiments.data import load_dataset
    from mnist_experiments.errors import UserError
    from mnist_experiments.training.fit import classification_metrics, predict_proba

    launch_dir = launch_dir or os.getcwd()
    dataset = load_dataset(cfg.data, int(cfg.seed))  # DataError before any run exists
    n_out = int(loaded.model.outputs[0].shape[-1])
    if n_out != len(dataset.class_names):
        raise UserError(
            f"The model {loaded.spec!r} has {n_out} outputs but the data {cfg.data.name} "
            f"has {len(dataset.class_names)} classes; evaluate it on data with as many "
            "classes as it was trained for."
        )
    proba = predict_proba(loaded.model, dataset.x_test)
    metrics = classification_metrics(dataset.y_test, proba)

    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from mnist_experiments.figures import plots
    from mnist_experiments.tracking import runs as tracking
    from mnist_experiments.tracking.store import resolve_tracking_uri

    store = loaded.tracking_uri or resolve_tracking_uri(None, launch_dir)
    client = MlflowClient(store)
    source_run = None
    if loaded.run_id:
        try:
            source_run = client.get_run(loaded.run_id)
        except MlflowException:
            source_run = None
    source_fp = source_run.data.tags.get("data.fingerprint") if source_run else None
    same_data = None if source_fp is None else (source_fp == dataset.fingerprint)

    experiment_id = tracking.ensure_experiment(store, experiment_name)
    data_container = OmegaConf.to_container(cfg.data, resolve=True, enum_to_str=True)
    eval_config = {"data": data_container, "seed": int(cfg.seed)}
    run_label = source_run.info.run_name if source_run else None
    run_name = run_name or f"eval {_short(loaded)} on {cfg.data.name}"

    tags = tracking.provenance_tags(launch_dir)
    tags.update({
        "run_kind": "evaluation",
        "evaluated_model_uri": loaded.uri,
        "data.fingerprint": dataset.fingerprint,
        "data.source": dataset.source,
        "data.name": str(cfg.data.name),
        "data.same_as_model_run": {True: "true", False: "false", None: "unknown"}[same_data],
        "overrides": " ".join(overrides)[:5000],
        "mlflow.note.content": _note(loaded, source_run, cfg, dataset, same_data, origin),
    })
    if loaded.model_id:
        tags["evaluated_model_id"] = loaded.model_id
    if loaded.run_id:
        tags["evaluated_run_id"] = loaded.run_id
    if run_label:
        tags["evaluated_run_name"] = run_label[:5000]
    if source_run:
        tags["evaluated_experiment_id"] = source_run.info.experiment_id

    names = list(dataset.class_names)
    y_pred = proba.argmax(axis=1)
    from mnist_experiments.tracking import artifacts

    with tracking.tracked_run(experiment_id, run_name, tags) as run:
        params = tracking.flatten(eval_config)
        params["model_uri"] = loaded.uri
        tracking.log_params_flat(params)
        mlflow.log_dict(eval_config, "config.yaml")
        mlflow.log_dict({"source": dataset.source, "fingerprint": dataset.fingerprint,
                         "shapes": dataset.shapes()}, "data.json")
        test_set = mlflow.data.from_numpy(
            dataset.x_test, targets=dataset.y_test, name=f"{cfg.data.name}-test")
        mlflow.log_input(test_set, context="test")
        mlflow.log_metrics(metrics, model_id=loaded.model_id, dataset=test_set)
        cm = artifacts.log_confusion_matrix(dataset.y_test, y_pred, names)
        artifacts.log_classification_report(dataset.y_test, y_pred, names)
        fig = plots.confusion_matrix_figure(
            cm, names, title=f"Confusion matrix ({cfg.data.name} test set)")
        artifacts.log_figure(fig, "plots/confusion_matrix.png", dpi=int(cfg.viz.dpi))
        run_id = run.info.run_id
    return {"run_id": run_id, "experiment_id": experiment_id, "metrics": metrics,
            "dataset": dataset, "source_run": source_run, "same_data": same_data,
            "tracking_uri": store}


def _note(loaded: Any, source_run: Any, cfg: Any, dataset: Any, same_data: Optional[bool],
          origin: str) -> str:
    """The run description (``mlflow.note.content``, Markdown)."""
    run = (f"run `{loaded.run_id}`" + (f" ({source_run.info.run_name})" if source_run else "")
           if loaded.run_id else "an unknown run")
    same = {True: "the same data (same fingerprint) as the model's run: the metrics "
                  "should equal its `test_*` metrics.",
            False: "different data from the model's run (the fingerprints differ).",
            None: "data whose relation to the model's training data is unknown."}[same_data]
    limit = cfg.data.limit if cfg.data.limit is not None else "all"
    return (
        f"Evaluation of `{loaded.uri}`, logged by {run}, on {len(dataset.y_test)} test "
        f"images of `{cfg.data.name}` (source `{dataset.source}`, limit {limit}, seed "
        f"{int(cfg.seed)}; data config from {origin}). This is {same} Data fingerprint "
        f"`{dataset.fingerprint}`."
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command; return (and, from the console script, exit with) its status."""
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    from mnist_experiments.errors import UserError

    try:
        check_overrides(args.overrides)
        from mnist_experiments.tracking.models import load

        loaded = load(args.model, tracking_uri=args.tracking_uri)
        overrides, origin, warnings = eval_overrides(loaded.run_config, args.overrides)
        for warning in warnings:
            print(f"mnist-exp-evaluate: warning: {warning}", file=sys.stderr)
        cfg = compose_config(overrides, args.overrides)
        outcome = evaluate(loaded, cfg, overrides, origin, args.experiment_name, args.run_name)
    except UserError as exc:
        print(f"mnist-exp-evaluate: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("mnist-exp-evaluate: interrupted (the run, if started, is marked KILLED)",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    print(format_report(loaded, outcome, origin, args.experiment_name))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
