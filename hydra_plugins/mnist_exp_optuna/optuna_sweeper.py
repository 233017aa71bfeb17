"""A Hydra Sweeper over Optuna (>= 4) and its ask-and-tell interface.

``hydra/sweeper=optuna`` (as ``hparams_search=optuna`` composes it). Hydra's own
``hydra-optuna-sweeper`` pins ``optuna<3`` (no storage with SQLAlchemy 2, no pruning)
and its 1.4 line needs an unreleased Hydra; this one is the project's.

- The study is stored (default: ``optuna.db`` beside the MLflow SQLite store; any
  Optuna storage URL with ``hydra.sweeper.storage``) and named after the sweep dir,
  so the same command with the same ``hydra.sweep.dir`` continues it up to
  ``hydra.sweeper.n_trials`` finished trials in total; trials a crash left RUNNING are
  marked FAIL (their MLflow runs are ended by the liveness repair).
- One Hydra job per trial, its job number the trial number (no collision on resume),
  ``hydra.sweeper.n_jobs`` at a time through the configured launcher.
- ``hydra.sweeper.pruner=median|hyperband|none``: each job reports its per-epoch
  validation accuracy to its trial and stops when the pruner says so
  (:mod:`mnist_experiments.launch.study`); the trial is told PRUNED. No trial is
  pruned before ``hydra.sweeper.warmup_epochs`` epochs (1), nor by the median pruner
  before ``hydra.sweeper.startup_trials`` trials (4) finished.

Light at import (Hydra imports every plugin at start-up): Optuna loads in ``sweep``.
"""


import logging
import math
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from mnist_experiments.launch.study import STARTUP_TRIALS, WARMUP_EPOCHS

log = logging.getLogger(__name__)


# Enums: a bad value is refused when Hydra composes the config, before any run exists
Direction = Enum("Direction", ["maximize", "minimize"])
Sampler = Enum("Sampler", ["tpe", "random"])
Pruner = Enum("Pruner", ["median", "hyperband", "none"])


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.mnist_exp_optuna.optuna_sweeper.OptunaSweeper"
    direction: Direction = Direction.maximize
    study_name: Optional[str] = None  # default: mnist-exp-<sweep dir name>
    storage: Optional[str] = None  # default: sqlite:///<MLflow store's dir>/optuna.db
    n_trials: int = 20  # finished (complete or pruned) trials in total, resumes included
    n_jobs: int = 1  # trials launched at once (with hydra/launcher=joblib)
    sampler: Sampler = Sampler.tpe
    seed: Optional[int] = None  # the sampler's seed
    pruner: Pruner = Pruner.none
    warmup_epochs: int = WARMUP_EPOCHS  # epochs a trial trains before it may be pruned
    startup_trials: int = STARTUP_TRIALS  # trials finished before the median pruner prunes any
    params: Dict[str, str] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf,
                             provider="mnist-experiments")


class OptunaSweeper(Sweeper):
    def __init__(self, direction: Any, study_name: Optional[str], storage: Optional[str],
                 n_trials: int, n_jobs: int, sampler: Any, seed: Optional[int], pruner: Any,
                 params: Optional[Dict[str, str]] = None, warmup_epochs: int = WARMUP_EPOCHS,
                 startup_trials: int = STARTUP_TRIALS):
        self.direction, self.study_name, self.storage = _name(direction), study_name, storage
        self.n_trials, self.n_jobs = int(n_trials), max(1, int(n_jobs))
        self.sampler, self.seed, self.pruner = _name(sampler), seed, _name(pruner)
        self.params = dict(params or {})
        self.warmup_epochs, self.startup_trials = warmup_epochs, startup_trials
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> List[Any]:
        import optuna
        from optuna.trial import TrialState

        from mnist_experiments.launch import signals, study as studies
        from mnist_experiments.launch.files import absolute
        from mnist_experiments.tracking.store import resolve_tracking_uri

        assert self.config is not None
        cwd = self.config.hydra.runtime.cwd
        sweep_dir = absolute(self.config.hydra.sweep.dir, cwd)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        space, fixed = studies.search_space(self.params, arguments)
        if not space:
            from mnist_experiments.errors import UserError

            raise UserError("hparams_search=optuna has nothing to search: give "
                            "hydra.sweeper.params or a sweep override such as "
                            "'optimizer.learning_rate=tag(log, interval(1e-4, 1e-2))'.")
        uri = resolve_tracking_uri(self.config.mlflow.tracking_uri, cwd)
        address = studies.StudyAddress(
            storage=self.storage or studies.default_storage(uri, cwd),
            study_name=self.study_name or f"mnist-exp-{sweep_dir.name}",
            pruner=str(self.pruner), direction=self.direction,
            warmup_epochs=self.warmup_epochs, startup_trials=self.startup_trials)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            study_name=address.study_name, storage=address.storage, load_if_exists=True,
            sampler=studies.make_sampler(self.sampler, self.seed, studies.trials_in_storage(
                address.storage, address.study_name)),
            pruner=address.make_pruner(), direction=self.direction)
        address.write(sweep_dir)
        for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(stale.number, state=TrialState.FAIL)  # its process is gone
            log.info("trial %d was left running by an earlier sweep: marked failed",
                     stale.number)

        def finished() -> int:
            return len(study.get_trials(deepcopy=False,
                                        states=(TrialState.COMPLETE, TrialState.PRUNED)))

        if finished():
            log.info("Optuna study %s in %s: %d of %d trials finished before, continuing",
                     address.study_name, address.storage, finished(), self.n_trials)
        else:
            log.info("Optuna study %s in %s, %d trials, pruner %s", address.study_name,
                     address.storage, self.n_trials, address.pruner)
        returns: List[Any] = []
        failures = 0
        while finished() < self.n_trials and failures < max(self.n_trials, 1):
            trials = [study.ask(space) for _ in range(min(self.n_jobs,
                                                          self.n_trials - finished()))]
            try:
                results = self._launch(trials, fixed)
            except BaseException:
                for trial in trials:  # interrupted: these trials did not finish
                    _tell_failed(study, trial.number)
                raise
            for trial, ret in zip(trials, results):
                state, value = _outcome(ret)
                study.tell(trial.number, value if state == TrialState.COMPLETE else None,
                           state=state)
                failures += state == TrialState.FAIL
                log.info("trial %d %s%s", trial.number, state.name,
                         f" (objective {value:.4f})" if value is not None else "")
            returns.extend(results)
            if signals.received:
                raise signals.Interrupted(signals.received[0])
        if failures >= max(self.n_trials, 1):
            log.warning("stopped after %d failed trials", failures)
        from mnist_experiments.workflows.search import report_study  # heavy: MLflow

        report_study(study, sweep_dir)
        return returns

    def _launch(self, trials: List[Any], fixed: List[str]) -> List[Any]:
        """One job per trial, job number = trial number (consecutive within a batch)."""
        from mnist_experiments.launch import study as studies

        batch = [tuple(studies.trial_overrides(fixed, t.params)) for t in trials]
        self.validate_batch_is_legal(batch)
        numbers = [t.number for t in trials]
        if numbers == list(range(numbers[0], numbers[0] + len(numbers))):
            return list(self.launcher.launch(batch, initial_job_idx=numbers[0]))
        # another process asked trials in between: one launch per trial
        return [self.launcher.launch([b], initial_job_idx=n)[0] for b, n in zip(batch, numbers)]


def _name(value: Any) -> str:
    return str(getattr(value, "name", value))


def _outcome(ret: Any):
    from optuna.trial import TrialState

    from mnist_experiments.launch.files import read_job_record

    if ret.status != JobStatus.COMPLETED:
        return TrialState.FAIL, None
    # the job's output dir (ret.working_dir is the launch dir: hydra.job.chdir=False)
    output_dir = ret.hydra_cfg.hydra.runtime.output_dir if ret.hydra_cfg else None
    record = read_job_record(Path(output_dir)) if output_dir else None
    if record and record.get("pruned"):
        return TrialState.PRUNED, None
    value = ret.return_value
    try:
        value = float(value)
    except (TypeError, ValueError):
        return TrialState.FAIL, None
    return (TrialState.COMPLETE, value) if math.isfinite(value) else (TrialState.FAIL, None)


def _tell_failed(study: Any, number: int) -> None:
    from optuna.trial import TrialState

    try:
        study.tell(number, state=TrialState.FAIL)
    except Exception:  # noqa: BLE001 - already finished, or the storage is gone
        pass
