"""``mnist-exp-reproduce RUN``: re-run a recorded experiment and confirm its numbers.

A student submits a result and the config that produced it; a TA re-runs it on their
own machine and gets a verdict, without having to trust the student's files:

* the config (YAML) is parsed with a safe loader (no Python tags, no YAML aliases,
  no ``${...}`` interpolations), must not contain a ``hydra:`` or ``defaults:`` section
  (Hydra is not used to run it, so no Hydra callback, launcher or sweeper is ever
  configured from it), and every ``_target_`` must be on the allow-list of
  :mod:`mnist_experiments.config.safety`. Then it is merged onto the typed schema
  (:mod:`mnist_experiments.config.schema`: unknown keys and wrong types are refused) and
  validated, all before anything is imported, built, loaded or logged;
* the data are loaded and their fingerprint compared with the original run's before
  training: changed data are refused (exit 2) unless ``--allow-data-change``;
* the config's ``mlflow.tracking_uri`` is never contacted: the reproduction is logged
  to the store chosen on this machine (``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``,
  else ``sqlite:///<cwd>/mlflow.db``), the same store an original run id is read from.

RUN is an MLflow run id, a Hydra run dir (holding ``.hydra/config.yaml``) or a config
file (the full composed config, e.g. a run's downloaded ``config.yaml``). The new run is
tagged ``reproduces=<original run id, or the path>``; a table of the original and
reproduced metrics (``objective``, ``test_*``, ``cv_*``) and a verdict are printed, and
every difference in software versions, platform, git commit or data is named on stderr.

Exit status: 0 reproduced (or nothing to compare), 1 not reproduced, 2 refused (an
unsafe or invalid config, changed data, an unknown run; the message says why).

Importing this module is cheap (no TensorFlow, MLflow or Keras), so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import re
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from mnist_experiments.config.untrusted import (
    MAX_CONFIG_BYTES,
    build_config,
    parse_config,
    read_text,
)
from mnist_experiments.errors import DataError, UserError
from mnist_experiments.tracking.store import resolve_tracking_uri, sqlite_file

log = logging.getLogger("mnist_experiments.workflows.reproduce")

PROG = "mnist-exp-reproduce"
EXIT_REPRODUCED = 0
EXIT_NOT_REPRODUCED = 1
EXIT_REFUSED = 2

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
# Keys of the config that shape the data split (not which files are read).
SPLIT_KEYS = ("limit", "validation", "val_fraction")
# Metrics compared between the runs (timings are not results).
COMPARED_NAMES = ("objective",)
COMPARED_PREFIXES = ("test_", "cv_")


class DataChangedError(DataError):
    """The data differ from the original run's (refused unless --allow-data-change)."""


def is_compared(name: str) -> bool:
    """Whether a metric is a result to compare (objective, test_*, cv_*; no timings)."""
    if name.endswith("_seconds"):
        return False
    return name in COMPARED_NAMES or name.startswith(COMPARED_PREFIXES)


def warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------- the original
@dataclass
class Original:
    """What is known about the run being reproduced."""

    kind: str  # "run" | "run_dir" | "config_file"
    given: str  # RUN as given: a run id or an absolute path
    config_text: str
    config_where: str  # where the config was read from (for messages)
    run_id: Optional[str] = None
    experiment_name: Optional[str] = None
    tags: Dict[str, str] = field(default_factory=dict)
    metrics: Dict[str, float] = field(default_factory=dict)
    overrides: List[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The value of the new run's ``reproduces`` tag."""
        return self.run_id or self.given

    @property
    def data_fingerprint(self) -> Optional[str]:
        return self.tags.get("data.fingerprint")

    @property
    def data_source(self) -> Optional[str]:
        return self.tags.get("data.source")


def _safe_yaml(text: str) -> Any:
    """Plain data from YAML text: safe loader, no aliases (a YAML bomb), or None."""
    import yaml

    try:
        if any(isinstance(e, yaml.AliasEvent) for e in yaml.parse(text, Loader=yaml.SafeLoader)):
            return None
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def _overrides_from(path: Path) -> List[str]:
    """The override list of an ``overrides.yaml`` (a Hydra list or ``{overrides: [...]}``)."""
    if not path.is_file() or path.stat().st_size > MAX_CONFIG_BYTES:
        return []
    data = _safe_yaml(path.read_text(encoding="utf-8", errors="replace"))
    if isinstance(data, dict):
        data = data.get("overrides")
    if isinstance(data, list) and all(isinstance(o, str) for o in data):
        return list(data)
    return []


def _small_json(path: Path) -> Any:
    """The JSON in ``path``, or None when it is missing, too large or not JSON."""
    if not path.is_file() or path.stat().st_size > MAX_CONFIG_BYTES:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None


def _data_tags_from(path: Path) -> Dict[str, str]:
    """``data.fingerprint`` / ``data.source`` from a run's ``data.json`` artifact."""
    data = _small_json(path)
    tags = {}
    if isinstance(data, dict):
        if isinstance(data.get("fingerprint"), str):
            tags["data.fingerprint"] = data["fingerprint"]
        if isinstance(data.get("source"), str):
            tags["data.source"] = data["source"]
    return tags


def _metrics_from(path: Path) -> Dict[str, float]:
    """A flat ``{"test_accuracy": 0.98, ...}`` JSON file submitted beside a config."""
    data = _small_json(path)
    if not isinstance(data, dict):
        return {}
    return {
        str(k): float(v) for k, v in data.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and is_compared(str(k))
    }


def locate(run: str) -> Original:
    """Read the config (and what files say about the original) for a run dir or file.

    A run id is only recognised here; its config is read from the tracking store by
    :func:`attach_store`.
    """
    path = Path(run).expanduser()
    if path.is_dir():
        path = path.absolute()
        hydra_cfg = path / ".hydra" / "config.yaml"
        if hydra_cfg.is_file():
            original = Original("run_dir", str(path), read_text(hydra_cfg, "config"),
                                str(hydra_cfg), overrides=_overrides_from(
                                    path / ".hydra" / "overrides.yaml"))
            return original
        if (path / "config.yaml").is_file():  # e.g. `mlflow artifacts download` of a run
            return _from_config_file(path / "config.yaml")
        raise UserError(
            f"{path} is a directory but neither a Hydra run dir (no .hydra/config.yaml) nor "
            "a directory of run artifacts (no config.yaml). Give a run id, a run dir such as "
            "outputs/runs/<time>, or a config.yaml file."
        )
    if path.is_file():
        path = path.absolute()
        if path.parent.name == ".hydra" and path.name == "config.yaml":
            return locate(str(path.parent.parent))
        return _from_config_file(path)
    if RUN_ID.match(run.strip().lower()):
        return Original("run", run.strip().lower(), "", "")
    raise UserError(
        f"{run!r} is neither an existing file or directory nor an MLflow run id (32 hex "
        "digits). Give a run id (see `mlflow ui`), a Hydra run dir such as "
        "outputs/runs/<time>, or a config.yaml file."
    )


def _from_config_file(path: Path) -> Original:
    """A config file, with ``data.json`` / ``overrides.yaml`` / ``metrics.json`` beside it."""
    folder = path.parent
    original = Original("config_file", str(path), read_text(path, "config file"), str(path),
                        overrides=_overrides_from(folder / "overrides.yaml"))
    original.tags.update(_data_tags_from(folder / "data.json"))
    original.metrics.update(_metrics_from(folder / "metrics.json"))
    return original


# -------------------------------------------------------------- tracking store
def _client(uri: str, required: bool):
    """An MlflowClient on ``uri``, or None when a local store does not exist (yet)."""
    db = sqlite_file(uri)
    if db is not None and not db.is_file():
        if required:
            raise UserError(
                f"There is no MLflow tracking store at {db} (tracking URI {uri}). Run "
                f"{PROG} where the run's mlflow.db is, or pass --tracking-uri "
                "sqlite:////abs/path/mlflow.db (or http://host:5000, or set "
                "$MLFLOW_TRACKING_URI)."
            )
        return None
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def _download_text(client: Any, run_id: str, name: str) -> Optional[str]:
    """The text of one small artifact of a run, or None if it has none."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(client.download_artifacts(run_id, name, tmp))
        except Exception:  # missing artifact, unreachable artifact store
            return None
        if not local.is_file():
            return None
        return read_text(local, f"artifact {name} of run {run_id}")


def _run_details(client: Any, run: Any, original: Original) -> None:
    original.run_id = run.info.run_id
    original.tags.update(run.data.tags)
    original.metrics.update({k: v for k, v in run.data.metrics.items() if is_compared(k)})
    experiment = client.get_experiment(run.info.experiment_id)
    original.experiment_name = experiment.name if experiment else None
    if run.info.status != "FINISHED":
        warn(f"the original run {run.info.run_id} has status {run.info.status}, not FINISHED.")


def attach_store(original: Original, uri: str) -> None:
    """Fill in the original run from the tracking store (run id or run dir)."""
    from mlflow.exceptions import MlflowException

    if original.kind == "run":
        client = _client(uri, required=True)
        try:
            run = client.get_run(original.given)
        except MlflowException as exc:
            raise UserError(
                f"There is no run {original.given} in the MLflow tracking store {uri} "
                f"({str(exc).splitlines()[0]}). Pass the store that holds it with "
                "--tracking-uri (or $MLFLOW_TRACKING_URI), or give a run dir or config file."
            ) from None
        text = _download_text(client, original.given, "config.yaml")
        if text is None:
            parent = run.data.tags.get("mlflow.parentRunId")
            hint = (f"It is a child run (e.g. one fold) of run {parent}: reproduce that run. "
                    if parent else "")
            raise UserError(
                f"Run {original.given} has no config.yaml artifact (the composed config "
                f"logged by mnist-exp), so it cannot be reproduced. {hint}Give its Hydra run "
                "dir or a config file instead."
            )
        original.config_text = text
        original.config_where = f"config.yaml of run {original.given}"
        overrides_text = _download_text(client, original.given, "overrides.yaml")
        if overrides_text is not None:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "overrides.yaml"
                path.write_text(overrides_text, encoding="utf-8")
                original.overrides = _overrides_from(path)
        _run_details(client, run, original)
        return

    if original.kind != "run_dir":
        return
    client = _client(uri, required=False)
    if client is None:
        log.info("no tracking store at %s: no original run to compare with", uri)
        return
    candidates = {original.given, os.path.realpath(original.given)}
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = []
    for candidate in candidates:
        if "'" in candidate:  # cannot be quoted in a filter string; no run is found
            continue
        if experiments:
            runs += client.search_runs(
                experiments, filter_string=f"tags.`hydra.output_dir` = '{candidate}'",
                order_by=["attributes.start_time DESC"],
            )
    if not runs:
        log.info("no run in %s has hydra.output_dir=%s: no original metrics", uri,
                 original.given)
        return
    found = {r.info.run_id for r in runs}  # a k-fold parent's children are not the result
    runs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") not in found]
    runs.sort(key=lambda r: r.info.start_time or 0, reverse=True)
    if len({r.info.run_id for r in runs}) > 1:
        warn(f"{len(runs)} runs record the output dir {original.given}; comparing with the "
             f"latest, {runs[0].info.run_id}.")
    _run_details(client, runs[0], original)
    logged = _download_text(client, runs[0].info.run_id, "config.yaml")
    if logged is not None and _safe_yaml(logged) != _safe_yaml(original.config_text):
        warn(f"the run dir's .hydra/config.yaml differs from the config.yaml logged with run "
             f"{runs[0].info.run_id}; reproducing the run dir's config.")


# ------------------------------------------------------------------------ data
def check_data(original_cfg: Any, cfg: Any, original: Original, allow_change: bool) -> None:
    """Compare the data this machine has with the original run's, before training.

    The fingerprint covers the split arrays, so it is computed with the original's
    seed and split keys (``data.limit``, ``data.validation``, ``data.val_fraction``) on
    the files the reproduction will read: an ``--override seed=7`` is not a data change,
    a changed pixel or another ``data.path`` is.

    Raises
    ------
    DataChangedError
        If the fingerprints differ and ``allow_change`` is false.
    DataError
        If the data cannot be loaded.
    """
    expected = original.data_fingerprint
    if not expected:
        warn("the original's data fingerprint is unknown (no data.fingerprint tag or "
             "data.json), so the data cannot be checked.")
        return
    from mnist_experiments import data

    try:
        raw = data.load_raw(cfg.data)
    except DataError as exc:
        raise DataError(
            f"{exc} (To point the reproduction at your copy of the data, add "
            "--override data.path=/path/to/your/copy.)"
        ) from None
    data_cfg = copy.deepcopy(cfg.data)
    for key in SPLIT_KEYS:
        data_cfg[key] = original_cfg.data[key]
    actual = data.split(raw, data_cfg, int(original_cfg.seed)).fingerprint
    if actual == expected:
        log.info("data fingerprint %s... matches the original's (%s)", actual[:12], raw.source)
        return
    message = (
        f"The data differ from the original run's: its data fingerprint was {expected} "
        f"(source {original.data_source or 'unknown'}), but the data here give {actual} "
        f"(source {raw.source}). A changed file, another copy or another version of the data "
        "can change the numbers, so the result cannot be confirmed with these data."
    )
    if allow_change:
        warn(message + " Going on because of --allow-data-change.")
        return
    raise DataChangedError(
        message + " Nothing was trained or logged. Use the original data (or "
        "--override data.path=/path/to/it), or pass --allow-data-change to run anyway."
    )


# -------------------------------------------------------------------- compare
@dataclass
class Row:
    name: str
    original: Optional[float]
    reproduced: Optional[float]

    @property
    def difference(self) -> Optional[float]:
        if self.original is None or self.reproduced is None:
            return None
        if self.original == self.reproduced or (
                math.isnan(self.original) and math.isnan(self.reproduced)):
            return 0.0
        return self.reproduced - self.original

    def ok(self, tolerance: float) -> bool:
        if self.original is None:  # nothing to compare with
            return True
        d = self.difference
        return d is not None and not math.isnan(d) and abs(d) <= tolerance


def compare_metrics(original: Dict[str, float], reproduced: Dict[str, float]) -> List[Row]:
    names = {n for n in (*original, *reproduced) if is_compared(n)}

    def order(name: str) -> Tuple[int, str]:
        return (0 if name == "objective" else 1 if name.startswith("test_") else 2, name)

    return [Row(n, original.get(n), reproduced.get(n)) for n in sorted(names, key=order)]


def _fmt(value: Optional[float]) -> str:
    return "-" if value is None else repr(float(value))


def _fmt_diff(row: Row) -> str:
    d = row.difference
    if d is None:
        return "missing" if row.original is not None else "-"
    return "0" if d == 0 else f"{d:+.3g}"


def render_table(rows: List[Row], tolerance: float) -> str:
    header = ("metric", "original", "reproduced", "difference", "")
    lines = [header] + [
        (r.name, _fmt(r.original), _fmt(r.reproduced), _fmt_diff(r),
         "" if r.ok(tolerance) else "<-- differs")
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(line)).rstrip()
        for line in lines
    )


# ------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=textwrap.fill(
            "Re-run a recorded mnist-exp experiment with exactly its composed config and "
            "compare the numbers. RUN is an MLflow run id, a Hydra run dir "
            "(outputs/runs/<time>, holding .hydra/config.yaml) or a config file (a run's "
            "config.yaml; data.json, overrides.yaml and metrics.json beside it are used if "
            "present). The config is checked before anything is built: unknown keys, wrong "
            "types, a hydra: section, interpolations and any _target_ off the allow-list are "
            "refused, so a config cannot run code."
        ),
        epilog=(
            "Exit status: 0 reproduced (or no original metrics to compare), 1 not "
            "reproduced, 2 refused (unsafe or invalid config, changed data, unknown run).\n"
            "Examples:\n"
            f"  {PROG} 3f2a...c9            # a run id in ./mlflow.db\n"
            f"  {PROG} outputs/runs/2026-01-01_12-00-00-000000\n"
            f"  {PROG} submitted/config.yaml --expect test_accuracy=0.9871 --tolerance 5e-5\n"
            f"  {PROG} RUN --override seed=7   # what changes with another seed?"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run", metavar="RUN", help="MLflow run id, Hydra run dir or config file")
    parser.add_argument(
        "--tolerance", type=float, default=0.0, metavar="T",
        help="largest |reproduced - original| accepted for each metric (default 0.0: equal)",
    )
    parser.add_argument(
        "--tracking-uri", metavar="URI", default=None,
        help="MLflow store to read the original run from and log the reproduction to "
        "(default: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db). The config's "
        "mlflow.tracking_uri is never used.",
    )
    parser.add_argument(
        "--experiment-name", metavar="NAME", default=None,
        help="MLflow experiment of the new run (default: the original run's, else the "
        "config's mlflow.experiment_name)",
    )
    parser.add_argument(
        "--allow-data-change", action="store_true",
        help="run even if the data's fingerprint differs from the original's (warns)",
    )
    parser.add_argument(
        "--override", action="append", default=[], metavar="KEY=VALUE",
        help="change one value of the config on purpose (repeatable), e.g. seed=7",
    )
    parser.add_argument(
        "--expect", action="append", default=[], metavar="METRIC=VALUE",
        help="an original value to confirm, e.g. a number the student reported "
        "(repeatable; replaces the recorded value), e.g. test_accuracy=0.9871",
    )
    return parser


def _parse_expect(items: Sequence[str]) -> Dict[str, float]:
    expected = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            expected[name.strip()] = float(value)
        except ValueError:
            raise UserError(
                f"--expect {item!r} is not METRIC=NUMBER, e.g. --expect test_accuracy=0.9871."
            ) from None
        if not is_compared(name.strip()):
            raise UserError(
                f"--expect {item!r}: only objective, test_* and cv_* metrics are compared."
            )
    return expected


def reproduce(args: argparse.Namespace) -> int:
    """Check, re-run and compare; return the exit status."""
    if not (args.tolerance >= 0 and math.isfinite(args.tolerance)):
        raise UserError(f"--tolerance {args.tolerance} is invalid: give a number >= 0.")
    expected = _parse_expect(args.expect)
    launch_dir = os.getcwd()
    original = locate(args.run)

    def check_config():
        container = parse_config(original.config_text, original.config_where)
        return (build_config(container, [], original.config_where),
                build_config(container, args.override, original.config_where))

    # A config from a file is checked before the tracking store is even opened.
    if original.kind != "run":
        original_cfg, cfg = check_config()

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = resolve_tracking_uri(args.tracking_uri, launch_dir)
    attach_store(original, uri)
    if original.kind == "run":
        original_cfg, cfg = check_config()
    original.metrics.update(expected)

    print(f"Reproducing {original.kind.replace('_', ' ')} {original.label}"
          + (f" ({original.given})" if original.given != original.label else "")
          + f"\n  config: {original.config_where}\n  store:  {uri}", flush=True)

    check_data(original_cfg, cfg, original, args.allow_data_change)

    # Where the reproduction is logged: this machine's store, never the config's.
    configured = cfg.mlflow.tracking_uri
    if configured is None:
        os.environ["MLFLOW_TRACKING_URI"] = uri
    elif resolve_tracking_uri(configured, launch_dir) != uri:
        warn(f"the config's mlflow.tracking_uri={configured!r} is not used; the "
             f"reproduction is logged to {uri}.")
        cfg.mlflow.tracking_uri = uri
    experiment = args.experiment_name or original.experiment_name
    if experiment and experiment != cfg.mlflow.experiment_name:
        cfg.mlflow.experiment_name = experiment

    overrides = list(original.overrides) + list(args.override)
    note = (f"Reproduction of {original.kind.replace('_', ' ')} {original.label}"
            + (f" ({original.given})" if original.given != original.label else "")
            + f" with {PROG}"
            + (f"; deliberately changed: {' '.join(args.override)}" if args.override else "")
            + ".")
    tags = {"reproduces": original.label, "reproduces.kind": original.kind,
            "mlflow.note.content": note}
    if original.given != original.label:
        tags["reproduces.path"] = original.given
    if args.override:
        tags["reproduces.overrides"] = " ".join(args.override)[:5000]

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mnist_experiments.workflows.experiment import JobContext, run_experiment

    outcome = run_experiment(cfg, JobContext(launch_dir=launch_dir, overrides=overrides,
                                             tags=tags))
    client = _client(uri, required=True)
    new_run = client.get_run(outcome.run_id)

    rows = compare_metrics(original.metrics, new_run.data.metrics)
    compared = [r for r in rows if r.original is not None]
    failing = [r for r in compared if not r.ok(args.tolerance)]
    print(f"\nReproduction: run {outcome.run_id} (experiment {cfg.mlflow.experiment_name!r})\n")
    print(render_table(rows, args.tolerance))

    from mnist_experiments.tracking import provenance

    differences = provenance.compare(original.tags, new_run.data.tags)
    for difference in differences:
        warn(f"provenance differs: {difference.describe()}")
    if original.tags.get("git_dirty") == "true":
        warn(f"the original ran from uncommitted code (git_dirty=true at commit "
             f"{original.tags.get('git_commit', 'unknown')}): the code that made it may "
             "not exist anywhere else.")
    if differences and args.override:
        warn(f"(--override {' '.join(args.override)} was given, which may explain some "
             "of these differences.)")

    if not compared:
        verdict, status = "no original metrics to compare", EXIT_REPRODUCED
        detail = "the reproduced metrics are shown; nothing to confirm them against"
    elif failing:
        verdict, status = "NOT REPRODUCED", EXIT_NOT_REPRODUCED
        detail = (f"{len(failing)} of {len(compared)} metrics differ by more than tolerance "
                  f"{args.tolerance:g}: {', '.join(r.name for r in failing)}")
    else:
        worst = max(abs(r.difference) for r in compared)
        verdict, status = "REPRODUCED", EXIT_REPRODUCED
        detail = (f"{len(compared)} metric{'s' if len(compared) != 1 else ''}, "
                  f"max |difference| {worst:g} <= tolerance "
                  f"{args.tolerance:g}")
    if differences:
        detail += f"; {len(differences)} provenance difference(s), see the warnings"
    try:
        client.set_tag(outcome.run_id, "reproduction.verdict", verdict)
        if compared:
            client.set_tag(outcome.run_id, "reproduction.failing",
                           ",".join(r.name for r in failing) or "none")
    except Exception as exc:  # the result stands even if the tag cannot be written
        warn(f"could not tag run {outcome.run_id} with the verdict: {exc}")
    print(f"\nVerdict: {verdict} ({detail})", flush=True)
    return status


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``mnist-exp-reproduce``; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    try:
        return reproduce(args)
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
