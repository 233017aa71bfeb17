"""Every use of another library's private API, in one place, each with its version note.

Nothing else in the package touches a private name of Hydra, Keras, MLflow or Submitit
(:mod:`~mnist_experiments.compat.slurm`) or relies on Keras's import layout
(:mod:`~mnist_experiments.compat.lazy`). Each function degrades to a safe default, and
``tests/test_compat.py`` fails loudly, naming the upstream version, when one of them no
longer finds what it relies on.

Light: imports no TensorFlow, Keras or MLflow at module level.
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
from typing import Any, Callable, ContextManager, Optional, Sequence, Tuple

# Hydra versions whose private CachingConfigRepository has the shape patched below.
HYDRA_HELP_PATCH_VERSIONS = ("1.3.",)
# Hydra versions whose private help and error reporting (Hydra.format_config_groups,
# hydra._internal.utils.run_and_report, JobReturn.return_value) are patched below.
HYDRA_REPORT_PATCH_VERSIONS = ("1.3.",)


def _hydra_internal(versions: Tuple[str, ...], module: str, name: Optional[str] = None) -> Any:
    """The private ``hydra._internal.<module>`` (or its attribute ``name``) when this
    Hydra's version starts with one of ``versions`` and still has it, else ``None``: the
    caller then leaves Hydra alone, and tests/test_compat.py says which one is gone."""
    import importlib

    import hydra

    if not hydra.__version__.startswith(versions):
        return None
    try:
        found = importlib.import_module(f"hydra._internal.{module}")
        return found if name is None else getattr(found, name)
    except (ImportError, AttributeError):
        return None


def share_config_repository_for_help() -> bool:
    """Make ``mnist-exp --help`` fast (1.6 s -> under 0.5 s on Hydra 1.3).

    Hydra 1.3's help lists every config group, deep-copying the whole config repository
    twice per group (about 120 copies). Help only reads the repository and then exits,
    so the copies can share it. Private API: ``hydra._internal.config_repository.
    CachingConfigRepository.__init__`` (Hydra 1.3.x). Any other Hydra: left alone.

    Returns whether the patch was applied.
    """
    CachingConfigRepository = _hydra_internal(HYDRA_HELP_PATCH_VERSIONS, "config_repository",
                                              "CachingConfigRepository")
    if CachingConfigRepository is None:  # pragma: no cover - checked by tests/test_compat.py
        return False

    def __init__(self, delegate):
        self.delegate = delegate
        self.cache = {}

    CachingConfigRepository.__init__ = __init__
    return True


def hide_help_groups(prefixes: Sequence[str]) -> bool:
    """Leave the config groups under ``prefixes`` (internal ones, e.g. ``schema/``) out of
    ``--help``'s "Configuration groups"; return whether the patch was applied. Private API:
    ``hydra._internal.hydra.Hydra.format_config_groups(predicate, compact)`` (Hydra
    1.1-1.3), which lists every group the predicate accepts; any other Hydra: left alone."""
    Hydra = _hydra_internal(HYDRA_REPORT_PATCH_VERSIONS, "hydra", "Hydra")
    if Hydra is None:  # pragma: no cover - checked by tests/test_compat.py
        return False
    original = getattr(Hydra.format_config_groups, "__wrapped__", Hydra.format_config_groups)
    hidden = tuple(prefixes)

    def format_config_groups(self, predicate, compact=True):
        return original(self, lambda group: predicate(group) and not group.startswith(hidden),
                        compact)

    format_config_groups.__wrapped__ = original
    Hydra.format_config_groups = format_config_groups
    return True


def report_errors_with(describe: Callable[[BaseException], Optional[str]], prog: str) -> bool:
    """Report the errors ``describe`` knows as ``<prog>: <its paragraph>`` and exit 1,
    without Hydra's config search path, its "Set the environment variable
    HYDRA_FULL_ERROR=1" line and, for a single run, its "Error executing job with
    overrides" line. Errors ``describe`` returns None for keep Hydra's report;
    ``HYDRA_FULL_ERROR=1`` still raises everything. Private API (Hydra 1.1-1.3):
    ``hydra._internal.utils.run_and_report``, through which Hydra's main runs and reports
    everything, and ``hydra.core.utils.JobReturn.return_value``, which writes that line
    before it re-raises a failed job's error. Any other Hydra: left alone. Returns
    whether the patches were applied."""
    utils = _hydra_internal(HYDRA_REPORT_PATCH_VERSIONS, "utils")
    if utils is None:  # pragma: no cover - checked by tests/test_compat.py
        return False
    from hydra.core.utils import JobReturn, JobStatus
    original = getattr(utils.run_and_report, "__wrapped__", utils.run_and_report)
    prop = JobReturn.__dict__["return_value"]
    getter = getattr(prop.fget, "__wrapped__", prop.fget)

    def run_and_report(func: Any) -> Any:
        def described() -> Any:
            try:
                return func()
            except Exception as exc:
                message = None if os.environ.get("HYDRA_FULL_ERROR") == "1" else describe(exc)
                if message is None:
                    raise  # Hydra's own report
                sys.stderr.write(f"{prog}: {message}\n")
                sys.exit(1)

        return original(described)

    def return_value(job: Any) -> Any:
        error = job._return_value
        if (job.status == JobStatus.FAILED and isinstance(error, Exception)
                and os.environ.get("HYDRA_FULL_ERROR") != "1" and _single_run(job)
                and describe(error) is not None):
            raise error
        return getter(job)

    run_and_report.__wrapped__ = original
    return_value.__wrapped__ = getter
    utils.run_and_report = run_and_report
    JobReturn.return_value = property(return_value, prop.fset)
    return True


def _single_run(job: Any) -> bool:
    try:
        return str(job.hydra_cfg.hydra.mode) in ("RUN", "RunMode.RUN")
    except Exception:  # noqa: BLE001 - no Hydra config: keep Hydra's line
        return False


def job_return_value(job_return: Any) -> Any:
    """What a Hydra job returned, or the exception it raised, without re-raising it.

    ``JobReturn.return_value`` re-raises a failed job's exception; the sweep callback
    needs the exception to record it. Private API: ``JobReturn._return_value``
    (Hydra 1.1-1.3).
    """
    return getattr(job_return, "_return_value", None)


def keras_safe_mode() -> ContextManager[Any]:
    """A scope that forces Keras' safe deserialization on, even when a process called
    ``keras.config.enable_unsafe_deserialization()``.

    Private API: ``keras.src.saving.serialization_lib.SafeModeScope`` (Keras 3.0-3.15).
    Without it, ``load_model(safe_mode=True)`` still applies to the model file itself.
    """
    try:
        from keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:  # pragma: no cover - checked by tests/test_compat.py
        return contextlib.nullcontext()
    return SafeModeScope(True)


def optuna_trial_id(study: Any, number: int) -> int:
    """The storage id of trial ``number`` of ``study`` (Optuna 4).

    A sweep job knows its trial by number (its Hydra job number) and must build
    ``optuna.trial.Trial(study, trial_id)`` to report to it; Optuna has no public lookup
    from number to id (they differ when a storage holds several studies). Private API:
    ``Study._storage`` and ``Study._study_id``, and the storage's public
    ``get_trial_id_from_study_id_trial_number``.
    """
    return study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)


def keras_iterators_per_epoch() -> int:
    """How many iterators of the training dataset Keras' ``fit`` makes per epoch.

    A reshuffling ``tf.data`` shuffle draws each new iterator's order from one seeded
    generator, so a resumed fit moves it on by the iterators the epochs done made. Keras
    3's ``EpochIterator._enumerate_iterator`` (not an API) makes one when an epoch starts
    and one more when an epoch of known length ends: epoch ``e >= 1`` reads the ``2e``-th
    order. ``tests/test_resume.py`` checks it still holds."""
    return 2  # on any other Keras too: the resume tests say whether it still holds


def local_dataset_source(path: str) -> Any:
    """MLflow's dataset source for a local file or directory, without its warning.

    MLflow 3 registers ``LocalArtifactDatasetSource`` twice (for the scheme ``file`` and
    for none), so resolving any local path warns "can be interpreted in multiple ways:
    LocalArtifactDatasetSource, LocalArtifactDatasetSource" on every run; both mean the
    same source, so the warning says nothing to a user."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The specified dataset source can be "
                                "interpreted in multiple ways", category=UserWarning)
        return resolve_dataset_source(path)


def migrated_sqlite_store(path: str) -> None:
    """MLflow's tables at their newest revision in a new SQLite file, without the Default
    experiment ``SqlAlchemyStore`` adds (its artifact location names the store's own dir):
    the template of ``tracking/store_template.py``. Private API:
    ``mlflow.store.db.utils._initialize_tables`` (MLflow 1.x-3.x)."""
    import sqlalchemy
    from mlflow.store.db import utils

    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    try:
        utils._initialize_tables(engine)
    finally:
        engine.dispose()


# MLflow versions whose private mlflow.utils.environment has the shape patched below.
MLFLOW_REQUIREMENTS_CHECK_VERSIONS = ("3.",)


@contextlib.contextmanager
def requirements_from_this_environment() -> Any:
    """Log a model whose ``pip_requirements`` were read from this environment, skipping
    MLflow's check that this environment satisfies them.

    :func:`mnist_experiments.tracking.models.requirements` pins the versions installed
    here, so the check cannot find a mismatch, but its first call maps every installed
    distribution to its modules (0.9-1.3 s of a single run's 2 cores here). Private API:
    ``mlflow.utils.environment.warn_dependency_requirement_mismatches`` (MLflow 3.x);
    elsewhere, or if the name is gone, the check runs as usual."""
    import mlflow
    import mlflow.utils.environment as environment

    name = "warn_dependency_requirement_mismatches"
    original = getattr(environment, name, None)
    if original is None or not mlflow.__version__.startswith(MLFLOW_REQUIREMENTS_CHECK_VERSIONS):
        yield False
        return
    setattr(environment, name, lambda requirements: None)
    try:
        yield True
    finally:
        setattr(environment, name, original)


# Hydra versions whose private ConfigLoaderImpl.load_sweep_config is wrapped below.
HYDRA_SWEEP_COMPOSE_PATCH_VERSIONS = ("1.3.",)
SWEEP_CONFIGS_KEPT = 64  # job configs composed by the check, kept for the launcher


def compose_each_sweep_job_once(kept: int = SWEEP_CONFIGS_KEPT) -> bool:
    """Compose each job of a sweep once, not twice (~0.4 s per job on 2 cores here), and
    jobs that differ only in values from a template (:class:`_SweepTemplates`).

    A Hydra sweeper first composes every job's config to check the batch
    (``Sweeper.validate_batch_is_legal``, public), then its launcher composes each job
    again to run it. The configs the check composed (the first ``kept`` of a batch) are
    handed to the launcher in the same process, each once: the launcher writes the
    job's id and number into it, and nobody else holds it. Launchers whose jobs compose
    in other processes (joblib, Submitit, Ray) compose there as before. Private API:
    ``hydra._internal.config_loader_impl.ConfigLoaderImpl.load_sweep_config``
    (Hydra 1.3.x); any other Hydra is left alone.

    Returns whether the patch is applied.
    """
    from hydra.plugins.sweeper import Sweeper

    ConfigLoaderImpl = _hydra_internal(HYDRA_SWEEP_COMPOSE_PATCH_VERSIONS, "config_loader_impl",
                                       "ConfigLoaderImpl")
    if ConfigLoaderImpl is None:  # pragma: no cover - checked by tests/test_compat.py
        return False
    compose = ConfigLoaderImpl.load_sweep_config
    if getattr(compose, "composes_once", False):
        return True
    check = Sweeper.validate_batch_is_legal
    composed: dict = {}  # (id of the master config, overrides) -> (master, job config)
    checking = []

    def validate_batch_is_legal(self, batch):
        composed.clear()  # a new batch: what the last one left is not needed
        checking.append(True)
        try:
            return check(self, batch)
        finally:
            checking.pop()

    templates = _SweepTemplates(compose, kept)

    def load_sweep_config(self, master_config, sweep_overrides):
        key = (id(master_config), tuple(sweep_overrides))
        if not checking:
            master, config = composed.pop(key, (None, None))
            if master is master_config:
                return config
        config = templates.compose(self, master_config, list(sweep_overrides))
        if checking and len(composed) < kept:
            composed[key] = (master_config, config)
        return config

    load_sweep_config.composes_once = True
    Sweeper.validate_batch_is_legal = validate_batch_is_legal
    ConfigLoaderImpl.load_sweep_config = load_sweep_config
    return True


class _SweepTemplates:
    """Jobs that differ only in plain values (``seed=1``, ``seed=2``, ...) composed from
    one template instead of by Hydra each (~117 ms -> ~10 ms a job on 2 cores here).

    Hydra composes a job in two steps: the defaults list, chosen by the config-group
    overrides (``optimizer=adam``), is merged into a config; then the value overrides
    (``seed=2``) are set in it (``ConfigLoaderImpl._apply_overrides_to_config``), and the
    job's overrides are recorded under ``hydra``. Nearly all the time goes to the first
    step, and only group overrides change it (a defaults list can interpolate groups, not
    values). So the first job of each "shape" (its overrides with every plain value left
    out) is composed by Hydra and kept pristine as a template; the next job of that shape
    is a copy of it with Hydra's own second step and records redone, as
    ``_load_configuration_impl`` does them. Overrides of any other kind (a config group,
    a ``+``/``~``/``++`` override, a dict or list value, a ``hydra.`` key) are part of
    the shape whole, so only jobs that share them share a template; a repeated key and
    any error go to Hydra's full composition, which also gives Hydra's own message.
    ``tests/test_compat.py`` checks the two agree. Private API (Hydra 1.3.x):
    ``ConfigLoaderImpl._apply_overrides_to_config`` and ``get_overrides_dirname``.
    """

    PLAIN = (str, int, float, bool, type(None))

    def __init__(self, compose: Callable[..., Any], kept: int) -> None:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        loader_module = _hydra_internal(HYDRA_SWEEP_COMPOSE_PATCH_VERSIONS, "config_loader_impl")
        self._apply = loader_module.ConfigLoaderImpl._apply_overrides_to_config
        self._dirname = loader_module.get_overrides_dirname
        self._parser = OverridesParser.create()
        self._compose, self._kept = compose, kept
        self._templates: dict = {}  # (id(master), shape) -> (master, pristine config)

    def _shape(self, loader: Any, overrides: Sequence[str]) -> Optional[Tuple[tuple, list, list]]:
        """The job's shape (its overrides with each plain value left out), the overrides
        Hydra records as the task's and the plain value overrides; ``None`` if a key
        repeats."""
        from hydra.core.override_parser.types import OverrideType

        parsed = self._parser.parse_overrides(overrides=overrides)
        keys = [override.key_or_group for override in parsed]
        if len(set(keys)) != len(keys):
            return None
        shape, values = [], []
        for override in parsed:
            if (override.type is OverrideType.CHANGE and override.package is None
                    and not override.is_sweep_override() and not override.is_hydra_override()
                    and isinstance(override.value(), self.PLAIN)
                    and not loader.repository.group_exists(override.key_or_group)):
                shape.append(("=", override.key_or_group))
                values.append(override)
            else:
                shape.append(override.input_line)
        return tuple(shape), [o for o in parsed if not o.is_hydra_override()], values

    def compose(self, loader: Any, master_config: Any, overrides: list) -> Any:
        """The job's config: from its shape's template if there is one, else Hydra's."""
        try:
            shaped = self._shape(loader, overrides)
        except Exception:  # noqa: BLE001 - Hydra's own composition reports it
            shaped = None
        if shaped is None:
            return self._compose(loader, master_config, overrides)
        shape, task, values = shaped
        key = (id(master_config), shape)
        master, template = self._templates.get(key, (None, None))
        if master is master_config:
            try:
                return self._from_template(master_config, template, task, values)
            except Exception:  # noqa: BLE001 - Hydra's own composition reports it
                pass
        config = self._compose(loader, master_config, overrides)
        if len(self._templates) < self._kept:
            self._templates[key] = (master_config, copy.deepcopy(config))
        return config

    def _from_template(self, master_config: Any, template: Any, task: list,
                       values: list) -> Any:
        """A copy of ``template`` with Hydra's last steps of a composition redone."""
        from omegaconf import OmegaConf, open_dict

        config = copy.deepcopy(template)
        self._apply(values, config)
        config.hydra.overrides.task = [override.input_line for override in task]
        with open_dict(config.hydra):
            for key in config.hydra.job.env_copy:
                config.hydra.job.env_set[key] = os.environ[key]
        config.hydra.runtime.cwd = os.getcwd()
        named = config.hydra.job.config.override_dirname
        config.hydra.job.override_dirname = self._dirname(
            overrides=task, kv_sep=named.kv_sep, item_sep=named.item_sep,
            exclude_keys=named.exclude_keys)
        OmegaConf.copy_cache(from_config=master_config, to_config=config)
        return config
