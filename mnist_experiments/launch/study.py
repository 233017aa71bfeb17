"""An Optuna study behind a sweep: its search space, its storage, and a trial's view of it.

The sweeper (``hydra_plugins/mnist_exp_optuna``) asks the study for trials and launches
one Hydra job per trial, the job number being the trial number; it writes the study's
address to ``<sweep dir>/optuna.json``. A job reads that file to find its trial, report
its per-epoch validation accuracy to it and ask the pruner whether to stop
(:func:`job_trial`). Optuna is imported only when a study is used.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from mnist_experiments.errors import UserError

STUDY_FILE = "optuna.json"
PRUNERS = ("median", "hyperband", "none")
SAMPLERS = ("tpe", "random")
# the defaults of hydra.sweeper.startup_trials and warmup_epochs: the first trials are
# never pruned (the median of nothing is noise); a later one may be from its first epoch
# on, as with Optuna's own defaults (bench/results-sweeps.md: warm-up 2 trained 7-9% more
# epochs than 1 and found the same best in each of three searches)
STARTUP_TRIALS, WARMUP_EPOCHS = 4, 1


def search_space(params: Dict[str, str], arguments: List[str]) -> Tuple[Dict[str, Any], List[str]]:
    """Optuna distributions of the sweep overrides (``params`` from the config, then the
    command line's ``key=choice(...)``/``range``/``interval``/``tag(log, interval)``) and
    the command line's plain overrides, which every trial keeps."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    space: Dict[str, Any] = {}
    fixed: List[str] = []
    config_params = [f"{k}={v}" for k, v in (params or {}).items()]
    for override in parser.parse_overrides(config_params + list(arguments)):
        key = override.get_key_element()
        if override.is_sweep_override():
            space[key] = _distribution(override)
        else:
            space.pop(key, None)  # the command line fixes what the config searched
            fixed.append(f"{key}={override.get_value_element_as_str()}")
    return space, fixed


def _distribution(override: Any) -> Any:
    from hydra.core.override_parser.types import IntervalSweep, RangeSweep, Transformer
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    value = override.value()
    if override.is_choice_sweep() or (isinstance(value, RangeSweep) and value.shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    if isinstance(value, RangeSweep):
        step = value.step or 1
        if all(isinstance(v, int) for v in (value.start, value.stop, step)):
            # Hydra's range() excludes its stop; Optuna's high is included
            return IntDistribution(int(value.start), int(value.stop) - int(step), step=int(step))
        return FloatDistribution(float(value.start), float(value.stop) - float(step),
                                 step=float(step))
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise UserError(f"{override.input_line} cannot be searched by Optuna: use choice(...), "
                    "range(start, stop[, step]), interval(low, high) or "
                    "tag(log, interval(low, high)).")


def trial_overrides(fixed: List[str], params: Dict[str, Any]) -> List[str]:
    return [*fixed, *(f"{k}={_as_override(v)}" for k, v in params.items())]


def _as_override(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def make_pruner(name: str, warmup_epochs: int = WARMUP_EPOCHS,
                startup_trials: int = STARTUP_TRIALS) -> Any:
    """Optuna's pruner ``name``. No trial is pruned before it trained ``warmup_epochs``
    epochs (the median pruner's ``n_warmup_steps``, Hyperband's ``min_resource``), and
    the median pruner prunes nothing before ``startup_trials`` trials finished (its
    ``n_startup_trials``)."""
    import optuna

    check_pruner_settings({"warmup_epochs": warmup_epochs, "startup_trials": startup_trials})
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials,
                                           n_warmup_steps=warmup_epochs)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, warmup_epochs))
    if name in ("none", None):
        return optuna.pruners.NopPruner()
    raise UserError(f"hydra.sweeper.pruner={name} is not a pruner: choose one of "
                    f"{', '.join(PRUNERS)}.")


def check_pruner_settings(sweeper: Any) -> None:
    """Refuse a ``hydra.sweeper.warmup_epochs`` or ``startup_trials`` that is not a
    whole number >= 0 (the sweep checks them before its parent run starts)."""
    for key in ("warmup_epochs", "startup_trials"):
        value = sweeper.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UserError(f"hydra.sweeper.{key}={value} is not a count: give a whole "
                            f"number >= 0 (or leave it out for the default).")


def make_sampler(name: str, seed: Optional[int], trials_before: int = 0) -> Any:
    """The study's sampler. A resumed study (``trials_before`` trials in its storage)
    seeds it with ``seed + trials_before``: a sampler seeded as at the start draws the
    first trials' settings again (TPE's first trials are random draws), so a resumed
    search would repeat the trials it already has."""
    import optuna

    if seed is not None:
        seed = int(seed) + trials_before
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UserError(f"hydra.sweeper.sampler={name} is not a sampler: choose one of "
                    f"{', '.join(SAMPLERS)}.")


def trials_in_storage(storage: str, study_name: str) -> int:
    """How many trials (of any state) study ``study_name`` holds; 0 if it does not exist."""
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return 0
    return len(study.get_trials(deepcopy=False))


def default_storage(tracking_uri: Optional[str], launch_dir: str) -> str:
    """A SQLite file beside the MLflow store (``optuna.db``), else in the launch dir."""
    from mnist_experiments.tracking.store import sqlite_file

    db = sqlite_file(tracking_uri) if tracking_uri else None
    where = db.parent if db is not None else Path(launch_dir)
    return f"sqlite:///{(where / 'optuna.db').resolve()}"


@dataclass
class StudyAddress:
    """What a job needs to find its trial: written by the sweeper into the sweep dir."""

    storage: str
    study_name: str
    pruner: str
    direction: str = "maximize"
    warmup_epochs: int = WARMUP_EPOCHS
    startup_trials: int = STARTUP_TRIALS

    def make_pruner(self) -> Any:
        return make_pruner(self.pruner, self.warmup_epochs, self.startup_trials)

    def write(self, sweep_dir: Path) -> None:
        (Path(sweep_dir) / STUDY_FILE).write_text(json.dumps(self.__dict__, indent=2))

    @classmethod
    def read(cls, sweep_dir: Path) -> Optional["StudyAddress"]:
        path = Path(sweep_dir) / STUDY_FILE
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))

    def load(self) -> Any:
        import optuna

        return optuna.load_study(study_name=self.study_name, storage=self.storage,
                                 pruner=self.make_pruner())


class JobTrial:
    """A sweep job's Optuna trial: reports each epoch's objective, says when to stop."""

    def __init__(self, study: Any, number: int):
        import optuna

        trial_id = study_trial_id(study, number)
        self.trial = optuna.trial.Trial(study, trial_id)
        self.number = number
        self.pruned_at: Optional[int] = None

    def report(self, value: float, epoch: int) -> bool:
        """Report ``value`` at ``epoch`` (1-based); True if the trial should stop now."""
        if value is None or not math.isfinite(value):
            return False
        self.trial.report(float(value), epoch)
        if self.trial.should_prune():
            self.pruned_at = epoch
            return True
        return False


def study_trial_id(study: Any, number: int) -> int:
    """The storage's id of trial ``number`` (Optuna's storage API: ids differ from
    numbers once a storage holds several studies)."""
    from mnist_experiments import compat

    return compat.optuna_trial_id(study, number)


_current: Dict[str, Optional[JobTrial]] = {"trial": None}


def job_trial() -> Optional[JobTrial]:
    """The trial of this Hydra job, if it is a job of an Optuna sweep."""
    return _current["trial"]


def open_job_trial(sweep_dir: Optional[Path], job_num: Optional[str]) -> Optional[JobTrial]:
    """Find (and remember for :func:`job_trial`) the trial a sweep job runs."""
    _current["trial"] = None
    if sweep_dir is None or job_num is None:
        return None
    address = StudyAddress.read(sweep_dir)
    if address is None:
        return None
    # without a pruner the trial still gets its per-epoch values (NopPruner never prunes):
    # the study then holds every trial's learning curve, as Optuna's plots expect
    _current["trial"] = JobTrial(address.load(), int(job_num))
    return _current["trial"]
