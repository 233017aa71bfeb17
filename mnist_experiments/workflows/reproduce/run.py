"""Re-running an original on this machine and judging the result.

:func:`reproduce` checks the config (untrusted), the data (their fingerprint), re-runs
the config exactly (same seed, same recorded thread count), compares the metrics and,
when they are not identical, measures this config's spread here with re-runs under
other seeds (:mod:`.verdict`). Every run it makes is logged to the store chosen on
this machine, never to the config's ``mlflow.tracking_uri``, and it never registers
a model or moves an alias, whatever the config says.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from mnist_experiments import data
from mnist_experiments.config.untrusted import build_config, parse_config
from mnist_experiments.errors import DataError, UserError
from mnist_experiments.launch import numerics, signals
from mnist_experiments.launch.context import JobContext
from mnist_experiments.tracking import liveness, provenance
from mnist_experiments.tracking.runs import where_to_look
from mnist_experiments.tracking.store import resolve_tracking_uri
from mnist_experiments.workflows.reproduce.original import (
    SPLIT_KEYS,
    Original,
    _client,
    attach_store,
    locate,
    warn,
)
from mnist_experiments.workflows.reproduce.verdict import (
    Row,
    Verdict,
    calibrated_verdict,
    compare_metrics,
    exact_verdict,
    judged_metrics,
)
from mnist_experiments.workflows.reproduce.workers import (
    calibrate,
    jobs_at_once,
    run_in_worker,
    worker_pool,
)

log = logging.getLogger("mnist_experiments.workflows.reproduce")

PROG = "mnist-exp-reproduce"
DEFAULT_CALIBRATION_RUNS = 5


@dataclass
class Request:
    """What to reproduce and how (the command line of ``mnist-exp-reproduce``)."""

    run: str
    tolerance: float = 0.0
    tracking_uri: Optional[str] = None
    experiment_name: Optional[str] = None
    allow_data_change: bool = False
    overrides: List[str] = field(default_factory=list)
    expect: Dict[str, float] = field(default_factory=dict)  # claimed values
    calibration_runs: int = DEFAULT_CALIBRATION_RUNS
    jobs: Optional[int] = None  # parallel calibration runs; None: cores // threads
    parent_run_id: Optional[str] = None  # e.g. a grading's parent run
    tags: Dict[str, str] = field(default_factory=dict)
    launch_dir: str = field(default_factory=os.getcwd)


@dataclass
class Result:
    original: Original
    run_id: str
    experiment_name: str
    tracking_uri: str
    rows: List[Row]
    verdict: Optional[Verdict]  # None: no original metrics to compare with
    differences: List[Any]  # provenance.Difference
    calibration_run_ids: List[str] = field(default_factory=list)

    @property
    def exit_status(self) -> int:
        return 2 if self.verdict is None else self.verdict.exit_status

    def to_json(self) -> Dict[str, Any]:
        v = self.verdict
        return {
            "verdict": v.word if v else "NOTHING_TO_COMPARE",
            "detail": v.detail if v else "no original metrics to compare with",
            "failing": v.failing if v else [],
            "run_id": self.run_id,
            "original_run_id": self.original.run_id,
            "original": self.original.label,
            "metrics": {r.name: {"original": r.original, "reproduced": r.reproduced,
                                 "difference": r.difference} for r in self.rows},
            "intervals": {i.metric: {"low": i.low, "high": i.high, "n": i.n, "mean": i.mean,
                                     "std": i.std, "level": i.level}
                          for i in (v.intervals if v else [])},
            "provenance_differences": [d.describe() for d in self.differences],
            "calibration_run_ids": self.calibration_run_ids,
        }


class DataChangedError(DataError):
    """The data differ from the original run's (refused unless --allow-data-change)."""


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


def reproduce(request: Request) -> Result:
    """Check, re-run, compare and (if not identical) calibrate; see the module doc.

    Raises
    ------
    UserError
        A refusal: an unsafe or invalid config, changed data, an unknown run.
    """
    if not (request.tolerance >= 0 and request.tolerance < float("inf")):
        raise UserError(f"--tolerance {request.tolerance} is invalid: give a number >= 0.")
    if request.calibration_runs == 1 or request.calibration_runs < 0:
        raise UserError(f"--calibration-runs {request.calibration_runs} is invalid: give 0 "
                        "(no calibration: any difference is INCONSISTENT) or at least 2 "
                        f"(default {DEFAULT_CALIBRATION_RUNS}).")
    original = locate(request.run)

    def check_config():
        container = parse_config(original.config_text, original.config_where)
        return (build_config(container, [], original.config_where),
                build_config(container, request.overrides, original.config_where))

    # A config from a file is checked before the tracking store is even opened.
    if original.kind != "run":
        original_cfg, cfg = check_config()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = resolve_tracking_uri(request.tracking_uri, request.launch_dir)
    attach_store(original, uri)
    if original.kind == "run":
        original_cfg, cfg = check_config()
    recorded = dict(original.metrics)  # what the store or files say, before any claim
    original.metrics.update(request.expect)
    print(f"Reproducing {original.kind.replace('_', ' ')} {original.label}"
          + (f" ({original.given})" if original.given != original.label else "")
          + f"\n  config: {original.config_where}\n  store:  {uri}", flush=True)
    check_data(original_cfg, cfg, original, request.allow_data_change)
    _point_at_this_store(cfg, uri, request)
    # --experiment-name, else the original run's experiment, else the config's
    cfg.mlflow.experiment_name = (request.experiment_name or original.experiment_name
                                  or cfg.mlflow.experiment_name)
    _never_register(cfg)

    overrides = list(original.overrides) + list(request.overrides)
    numerics.resolve(cfg)  # the original's oneDNN and ISA, or this CPU's for older runs
    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    context = JobContext(launch_dir=request.launch_dir, overrides=overrides,
                         tags=_tags(original, request), parent_run_id=request.parent_run_id)
    started_ms = int(time.time() * 1000)
    try:
        with worker_pool(cfg, request) as pool, signals.passed_to_children():
            run_id, _ = pool.submit(run_in_worker, container, context).result()
            client = _client(uri, required=True)
            new_run = client.get_run(run_id)
            rows = compare_metrics(original.metrics, new_run.data.metrics)
            verdict = exact_verdict(rows, request.tolerance) or _claims_refuted(
                compare_metrics(recorded, new_run.data.metrics), rows, request)
            if verdict is None and request.calibration_runs >= 2 and \
                    any(r.original is not None for r in rows):
                runs, ids = calibrate(pool, jobs_at_once(cfg, request), container, request, run_id,
                                      new_run.data.metrics, overrides)
            else:
                runs, ids = {}, []
    except (KeyboardInterrupt, BrokenProcessPool) as exc:
        # a stopped worker ends its runs KILLED; one that was killed (the OOM killer, or
        # it did not stop in time) could not: end those here, not at the next command
        client = MlflowClient(uri)
        ended = liveness.repair(client)
        if isinstance(exc, KeyboardInterrupt):
            exc.stopped_runs = _stopped_runs(  # type: ignore[attr-defined]
                client, str(cfg.mlflow.experiment_name), original.label, started_ms, uri)
            raise
        raise UserError(
            "A worker process of the reproduction died before its run ended (killed by "
            "a signal: most often the kernel's out-of-memory killer, see `dmesg`)"
            + (f"; the runs it left RUNNING are now marked KILLED ({', '.join(ended)})"
               if ended else "")
            + ". Nothing else was changed. Free some memory, or run fewer re-runs at a "
            "time (--jobs 1), and run the same command again.") from None
    differences = provenance.compare(original.tags, new_run.data.tags)
    result = Result(original, run_id, str(cfg.mlflow.experiment_name), uri, rows,
                    None, differences)
    if not any(r.original is not None for r in rows):
        _tag(client, run_id, {"reproduction.verdict": "NOTHING_TO_COMPARE"})
        return result

    if verdict is None and ids:
        result.calibration_run_ids = ids
        verdict = calibrated_verdict(rows, runs, judged_metrics(rows, list(request.expect)),
                                     request.tolerance)
    elif verdict is None:
        failing = [r.name for r in rows if not r.ok(request.tolerance)]
        verdict = Verdict("INCONSISTENT", f"{len(failing)} metrics differ by more than "
                                          f"tolerance {request.tolerance:g} (no calibration "
                                          "runs)", failing)
    result.verdict = verdict
    tags = {"reproduction.verdict": verdict.word,
            "reproduction.failing": ",".join(verdict.failing) or "none",
            "reproduction.detail": verdict.detail[:5000]}
    for interval in verdict.intervals:
        tags[f"reproduction.interval.{interval.metric}"] = f"[{interval.low:.6g}, {interval.high:.6g}]"
    _tag(client, run_id, tags)
    return result


def _stopped_runs(client: MlflowClient, experiment: str, label: str, since_ms: int,
                  uri: str) -> str:
    """What a signal left of this command's reproduction run (its calibration runs are
    its children): ``run <id> is KILLED. See it: ...``."""
    try:
        found = client.get_experiment_by_name(experiment)
        runs = [] if found is None else client.search_runs(
            [found.experiment_id],
            f"tags.reproduces = '{label}' and attributes.start_time >= {since_ms}")
    except Exception:  # noqa: BLE001 - the account is a courtesy; the runs are ended
        return ""
    if not runs:
        return "it stopped before the reproduction's run started; nothing was recorded."
    run = runs[-1]  # (the newest first)
    return (f"run {run.info.run_id} is {run.info.status}. "
            + where_to_look(uri, run.info.experiment_id, run.info.run_id))


def _claims_refuted(recorded: List[Row], rows: List[Row], request: Request) -> Optional[Verdict]:
    """INCONSISTENT without calibration when the re-run reproduces every metric the run
    recorded exactly, but not a claimed one: the claim is not what this run gave."""
    known = [r for r in recorded if r.original is not None]
    if not known or not request.expect or any(not r.ok(request.tolerance) for r in known):
        return None
    wrong = [r for r in rows if r.name in request.expect and not r.ok(request.tolerance)]
    if not wrong:
        return None
    return Verdict("INCONSISTENT", "the re-run reproduces the run's recorded metrics exactly, "
                   "but not the claimed " + ", ".join(
                       f"{r.name}={r.original:g} (the run gives {r.reproduced:.6g})"
                       for r in wrong), [r.name for r in wrong])


def _point_at_this_store(cfg: Any, uri: str, request: Request) -> None:
    """Log to this machine's store, never to the config's; keep the experiment."""
    configured = cfg.mlflow.tracking_uri
    if configured is None:
        os.environ["MLFLOW_TRACKING_URI"] = uri
    elif resolve_tracking_uri(configured, request.launch_dir) != uri:
        warn(f"the config's mlflow.tracking_uri={configured!r} is not used; the "
             f"reproduction is logged to {uri}.")
        cfg.mlflow.tracking_uri = uri
    os.environ["MLFLOW_TRACKING_URI"] = uri  # calibration workers inherit it


def _never_register(cfg: Any) -> None:
    """A reproduction never touches the grader's model registry."""
    if cfg.mlflow.register_as or cfg.mlflow.register_alias:
        warn(f"the config asks to register its model (mlflow.register_as="
             f"{cfg.mlflow.register_as!r}, register_alias={cfg.mlflow.register_alias!r}); a "
             "reproduction never registers models or moves aliases, so this is ignored.")
    cfg.mlflow.register_as = None
    cfg.mlflow.register_alias = None


def _tags(original: Original, request: Request) -> Dict[str, str]:
    note = (f"Reproduction of {original.kind.replace('_', ' ')} {original.label}"
            + (f" ({original.given})" if original.given != original.label else "")
            + f" with {PROG}"
            + (f"; deliberately changed: {' '.join(request.overrides)}"
               if request.overrides else "") + ".")
    tags = {"reproduces": original.label, "reproduces.kind": original.kind,
            "mlflow.note.content": note, **request.tags}
    if original.given != original.label:
        tags["reproduces.path"] = original.given
    if request.overrides:
        tags["reproduces.overrides"] = " ".join(request.overrides)[:5000]
    return tags


def _tag(client: Any, run_id: str, tags: Dict[str, str]) -> None:
    for key, value in tags.items():
        try:
            client.set_tag(run_id, key, value)
        except Exception as exc:  # the result stands even if a tag cannot be written
            warn(f"could not tag run {run_id} with {key}: {exc}")
