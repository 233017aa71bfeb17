"""Every private API this package relies on still exists upstream (see compat/).

When one of these fails after an upgrade, the message names the library version, and
the fix goes into ``mnist_experiments/compat/`` only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import hydra
import pytest

from mnist_experiments import compat
from mnist_experiments.compat import lazy


def test_hydra_help_patch_still_applies():
    if not hydra.__version__.startswith(compat.HYDRA_HELP_PATCH_VERSIONS):
        pytest.fail(f"Hydra {hydra.__version__} is not a version the --help patch was written "
                    f"for ({compat.HYDRA_HELP_PATCH_VERSIONS}); check CachingConfigRepository "
                    "and update compat.share_config_repository_for_help")
    from hydra._internal.config_repository import CachingConfigRepository

    original = CachingConfigRepository.__init__
    try:
        assert compat.share_config_repository_for_help(), (
            f"Hydra {hydra.__version__}: hydra._internal.config_repository."
            "CachingConfigRepository is gone; --help is slow again")
        repo = CachingConfigRepository(delegate="the delegate")
        assert repo.delegate == "the delegate" and repo.cache == {}
    finally:
        CachingConfigRepository.__init__ = original


def test_job_return_value_reads_a_failed_jobs_exception():
    from hydra.core.utils import JobReturn, JobStatus

    error = ValueError("boom")
    failed = JobReturn(status=JobStatus.FAILED, _return_value=error)
    assert compat.job_return_value(failed) is error, (
        f"Hydra {hydra.__version__}: JobReturn no longer keeps _return_value")
    assert compat.job_return_value(JobReturn(status=JobStatus.COMPLETED, _return_value=0.5)) == 0.5


def test_keras_safe_mode_scope_beats_the_global_switch():
    import keras

    scope = compat.keras_safe_mode()
    assert type(scope).__name__ == "SafeModeScope", (
        f"Keras {keras.__version__}: keras.src.saving.serialization_lib.SafeModeScope is gone")
    from keras.src.saving import serialization_lib

    keras.config.enable_unsafe_deserialization()
    try:
        with scope:
            assert serialization_lib.in_safe_mode() is True
    finally:
        serialization_lib.SafeModeScope(True).__enter__()  # restore the default


def test_hide_help_groups_still_applies():
    from hydra import initialize_config_module
    from hydra._internal.hydra import Hydra
    from hydra.core.global_hydra import GlobalHydra

    import mnist_experiments.commands.train  # noqa: F401  (registers the schema groups)

    original = Hydra.format_config_groups
    try:
        with initialize_config_module("mnist_experiments.conf", version_base="1.3"):
            app = GlobalHydra.instance().hydra

            def listed() -> str:
                return app.format_config_groups(lambda group: not group.startswith("hydra"))

            assert "schema/model: model" in listed()
            assert compat.hide_help_groups(("schema",)), (
                f"Hydra {hydra.__version__}: Hydra.format_config_groups is gone; --help "
                "lists the internal schema/ groups again")
            assert "schema" not in listed() and "model: bn_cnn" in listed()
    finally:
        Hydra.format_config_groups = original


def test_report_errors_with_still_applies(capsys):
    from hydra._internal import utils
    from hydra.core.utils import JobReturn, JobStatus
    from omegaconf import OmegaConf

    original, prop = utils.run_and_report, JobReturn.__dict__["return_value"]
    try:
        assert compat.report_errors_with(
            lambda exc: "one paragraph" if isinstance(exc, KeyError) else None, "prog"), (
            f"Hydra {hydra.__version__}: run_and_report or JobReturn.return_value is gone; "
            "config errors carry Hydra's boilerplate again")

        def bad():
            raise KeyError("x")

        with pytest.raises(SystemExit) as exit:
            utils.run_and_report(bad)
        assert exit.value.code == 1
        assert capsys.readouterr().err == "prog: one paragraph\n"

        # a single run's failed job: re-raised without "Error executing job with overrides"
        error = KeyError("y")
        job = JobReturn(status=JobStatus.FAILED, _return_value=error, overrides=["a=1"],
                        hydra_cfg=OmegaConf.create({"hydra": {"mode": "RUN"}}))
        with pytest.raises(KeyError):
            job.return_value
        assert "Error executing job" not in capsys.readouterr().err
        # a sweep's job keeps Hydra's line (it names the job)
        job.hydra_cfg = OmegaConf.create({"hydra": {"mode": "MULTIRUN"}})
        with pytest.raises(KeyError):
            job.return_value
        assert "Error executing job with overrides: ['a=1']" in capsys.readouterr().err
    finally:
        utils.run_and_report, JobReturn.return_value = original, prop


def test_optuna_trial_id_finds_a_trial_by_number_in_a_shared_storage(tmp_path):
    import optuna

    from mnist_experiments.compat import optuna_trial_id

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = optuna.create_study(study_name="a", storage=storage)
    for _ in range(3):
        first.ask()
    second = optuna.create_study(study_name="b", storage=storage)
    asked = [second.ask() for _ in range(2)]
    # trial 1 of study b is the storage's 5th trial: number and id differ
    assert optuna_trial_id(second, 1) == asked[1]._trial_id != 1
    assert optuna.__version__.startswith("4."), "check Study._storage and _study_id"


def test_migrated_sqlite_store_is_mlflows_schema_without_an_experiment(tmp_path):
    import sqlite3

    import mlflow
    from mlflow.tracking import MlflowClient

    compat.migrated_sqlite_store(str(tmp_path / "template.db"))
    connection = sqlite3.connect(tmp_path / "template.db")
    try:
        experiments = connection.execute("SELECT COUNT(*) FROM experiments").fetchone()[0]
    finally:
        connection.close()
    assert experiments == 0, f"MLflow {mlflow.__version__}: check db.utils._initialize_tables"
    # MLflow opens it as its own: the schema is at its head revision, Default is added
    client = MlflowClient(f"sqlite:///{tmp_path / 'template.db'}")
    assert [e.name for e in client.search_experiments()] == ["Default"]



def test_the_requirements_check_patch_still_applies():
    import mlflow
    import mlflow.utils.environment as environment

    from mnist_experiments.compat import (
        MLFLOW_REQUIREMENTS_CHECK_VERSIONS,
        requirements_from_this_environment,
    )

    assert mlflow.__version__.startswith(MLFLOW_REQUIREMENTS_CHECK_VERSIONS), (
        f"MLflow {mlflow.__version__}: check that mlflow.utils.environment still calls "
        "warn_dependency_requirement_mismatches, then add the version")
    original = environment.warn_dependency_requirement_mismatches
    with requirements_from_this_environment() as patched:
        assert patched
        assert environment.warn_dependency_requirement_mismatches is not original
        # the caller MLflow uses when it logs a model with pip_requirements
        source = open(environment.__file__).read()
        assert "warn_dependency_requirement_mismatches(" in source
    assert environment.warn_dependency_requirement_mismatches is original


def test_hydra_sweep_compose_patch_still_applies(tmp_path):
    """A sweep's job configs are composed once: the check's are handed to the launcher."""
    if not hydra.__version__.startswith(compat.HYDRA_SWEEP_COMPOSE_PATCH_VERSIONS):
        pytest.fail(f"Hydra {hydra.__version__} is not a version the sweep compose patch was "
                    f"written for ({compat.HYDRA_SWEEP_COMPOSE_PATCH_VERSIONS}); check "
                    "ConfigLoaderImpl.load_sweep_config and update "
                    "compat.compose_each_sweep_job_once")
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.plugins.sweeper import Sweeper

    originals = ConfigLoaderImpl.load_sweep_config, Sweeper.validate_batch_is_legal
    calls = []

    def counting(self, master_config, sweep_overrides):
        calls.append(list(sweep_overrides))
        return originals[0](self, master_config, sweep_overrides)

    try:
        ConfigLoaderImpl.load_sweep_config = counting
        assert compat.compose_each_sweep_job_once(kept=2)
        assert compat.compose_each_sweep_job_once(kept=2)  # twice: wrapped once
        from hydra import compose, initialize_config_module
        from hydra.core.global_hydra import GlobalHydra

        with initialize_config_module("mnist_experiments.conf", version_base="1.3"):
            master = compose("config", return_hydra_config=True)
            loader = GlobalHydra.instance().config_loader()
            # each job a config group of its own: none is composed from another's template
            batch = [["data=digits", f"optimizer={name}"] for name in ("adam", "sgd", "nadam")]

            class Checker(Sweeper):  # the public check every Hydra sweeper calls
                def setup(self, *args, **kwargs): ...
                def sweep(self, arguments): ...

            checker = Checker()
            checker.config, checker.config_loader, checker.hydra_context = master, loader, None
            checker.validate_batch_is_legal(batch)
            assert len(calls) == 3
            jobs = [loader.load_sweep_config(master, job) for job in batch]
        assert len(calls) == 4  # the first two were kept: only the third composed again
        assert [job.optimizer._target_.rsplit(".", 1)[1] for job in jobs] == ["Adam", "SGD",
                                                                              "Nadam"]
        assert all(job.data.name == "digits" for job in jobs)
        again = loader.load_sweep_config(master, batch[0])  # each is handed over once
        assert again is not jobs[0] and len(calls) == 4  # a copy of the job's template
        assert again.optimizer == jobs[0].optimizer
    finally:
        ConfigLoaderImpl.load_sweep_config, Sweeper.validate_batch_is_legal = originals


def test_sweep_jobs_composed_from_a_template_equal_hydras_own(tmp_path):
    """Jobs that differ only in plain values are copies of one template (compat.
    _SweepTemplates) and equal, key for key and flag for flag, what Hydra composes; a job
    of any other kind, or with a bad value, is left to Hydra and gets Hydra's error."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.errors import ConfigCompositionException
    from hydra.plugins.sweeper import Sweeper
    from omegaconf import OmegaConf

    original, check = ConfigLoaderImpl.load_sweep_config, Sweeper.validate_batch_is_legal
    calls = []

    def counting(self, master_config, sweep_overrides):
        calls.append(list(sweep_overrides))
        return original(self, master_config, sweep_overrides)

    jobs = [["data=digits", f"seed={seed}", f"optimizer={name}", f"optimizer.learning_rate={lr}",
             f"mlflow.run_name={run_name}", f"model.head={head}"]
            for seed in (1, 2) for name in ("adam", "sgd") for lr in (0.1, 0.01)
            for run_name in ("a", "null", "'${seed}'") for head in ("flatten", "global_avg")]
    jobs += [["+extra=1", "seed=3"], ["+extra=2", "seed=4"],  # '+' keys: Hydra composes
             ["data.class_names=[a,b,c,d,e,f,g,h,i,j]", "seed=5"],  # a list value: Hydra
             ["data.class_names=[k,l,m,n,o,p,q,r,s,t]", "seed=5"],
             ["train.epochs=2", "train.epochs=3"]]  # a repeated key: Hydra
    try:
        from hydra import compose, initialize_config_module
        from hydra.core.global_hydra import GlobalHydra

        ConfigLoaderImpl.load_sweep_config = counting
        with initialize_config_module("mnist_experiments.conf", version_base="1.3"):
            master = compose("config", overrides=["data=digits"], return_hydra_config=True)
            loader = GlobalHydra.instance().config_loader()
            hydras = [original(loader, master, job) for job in jobs]
            assert compat.compose_each_sweep_job_once()
            templated = [loader.load_sweep_config(master, job) for job in jobs]
            # 2 shapes of the 48 (adam, sgd) and the 5 Hydra composes itself
            assert len(calls) == 2 + 5
            for job, ours, theirs in zip(jobs, templated, hydras):
                assert OmegaConf.to_yaml(ours) == OmegaConf.to_yaml(theirs), job
                resolved = [OmegaConf.to_container(OmegaConf.masked_copy(
                    cfg, [key for key in cfg if key != "hydra"]), resolve=True)
                    for cfg in (ours, theirs)]
                assert resolved[0] == resolved[1], job
                assert OmegaConf.is_struct(ours) and not OmegaConf.is_readonly(ours.hydra)
                assert OmegaConf.get_type(ours.model) is OmegaConf.get_type(theirs.model)
            interpolated = jobs.index(["data=digits", "seed=2", "optimizer=sgd",
                                       "optimizer.learning_rate=0.01",
                                       "mlflow.run_name='${seed}'", "model.head=global_avg"])
            assert templated[interpolated].mlflow.run_name == "2"
            assert templated[1].hydra.overrides.task == jobs[1]
            assert templated[1].hydra.job.override_dirname == hydras[1].hydra.job.override_dirname
            # the template is kept pristine: what a job's launcher writes is not copied
            templated[0].seed = 99
            assert loader.load_sweep_config(master, jobs[0]).seed == 1
            with pytest.raises(ConfigCompositionException, match="seed=abc"):
                loader.load_sweep_config(master, [*jobs[0][:1], "seed=abc", *jobs[0][2:]])
    finally:
        ConfigLoaderImpl.load_sweep_config, Sweeper.validate_batch_is_legal = original, check


def test_the_submitit_watcher_patch_still_applies(tmp_path):
    submitit = pytest.importorskip("submitit", reason="pip install -e '.[slurm]'")
    from submitit.core.utils import FailedJobError
    from submitit.slurm.slurm import SlurmJob

    from mnist_experiments.compat import slurm

    original = SlurmJob.watcher
    try:
        assert slurm.watch_jobs_without_accounting(), (
            f"Submitit {submitit.__version__}: SlurmInfoWatcher or SlurmJob.watcher changed; "
            "a SLURM job that dies on a cluster without accounting is waited for forever")
        assert type(SlurmJob.watcher).__mro__[1] is slurm._QueueWatcherMixin
        assert slurm.watch_jobs_without_accounting()  # once: the same watcher stays
        assert type(SlurmJob.watcher).__mro__[2] is type(original)
        # the job and state are read from Submitit's own error for a job without result
        job = SlurmJob(tmp_path, "4242_3", tasks=[0])
        job._results_timeout_s = 0
        SlurmJob.watcher._info_dict["4242_3"] = {"State": "OUT_OF_MEMORY", "JobID": "4242_3"}
        SlurmJob.watcher._accounting = True  # (no sacct is asked: the state is given)
        SlurmJob.watcher._last_status_check = float("inf")
        error = job.exception()
        assert slurm.died_job(error) == {"job": "4242_3", "state": "OUT_OF_MEMORY"}, (
            f"Submitit {submitit.__version__} words a job without result differently: {error}")
        assert slurm.died_job(FailedJobError("Job 1_0 (task: 0) failed")) is None
        assert slurm.died_job(RuntimeError("Job 1_0 (task: 0)")) is None
    finally:
        SlurmJob.watcher = original


def test_a_slurm_jobs_final_state_names_its_cause_and_fix():
    """The paragraph for a SLURM job that ended without its result, from Submitit's own
    error (no sweep active in this process: the sweep dir is left for the user to fill)."""
    pytest.importorskip("submitit", reason="pip install -e '.[slurm]'")
    from submitit.core.utils import UncompletedJobError

    from mnist_experiments.launch.reporting import describe

    def paragraph(state: str) -> str:
        return describe(UncompletedJobError(
            f"Job 12_3 (task: 0) with path /x/12_3_0_result.pkl\n"
            f"has not produced any output (state: {state})"))

    text = paragraph("OUT_OF_MEMORY")
    assert text.startswith("SLURM job 12_3 of the sweep ended OUT_OF_MEMORY without its "
                           "result: it went over its memory; its log is in "), text
    assert text.endswith("hydra.sweep.dir=<this sweep's dir> to run only the jobs that did "
                         "not finish, with more memory per job (hydra.launcher.mem_gb)."), text
    assert "more time per job (hydra.launcher.timeout_min)" in paragraph("TIMEOUT")
    assert "its node failed; its log" in paragraph("NODE_FAIL")
    assert "most often for going over its memory" in paragraph("CANCELLED")


def test_keras_imports_without_scikit_learn_until_its_wrappers_are_used():
    """A run imports scikit-learn after its fit, not with Keras (~0.5 s before the first
    epoch): Keras's wrappers are deferred, and no module the run imports up front needs it."""
    code = textwrap.dedent("""
        import sys
        from mnist_experiments.launch import heap
        with heap.heavy_imports():
            import keras
            import mnist_experiments.workflows.experiment
        print("before", "sklearn" in sys.modules, keras.__version__)
        from keras.wrappers import SKLearnClassifier
        import sklearn.base
        print("after", issubclass(SKLearnClassifier, sklearn.base.BaseEstimator))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    before, after = [line.split() for line in done.stdout.splitlines()[-2:]]
    assert before[1] == "False", (
        f"Keras {before[2]} (or a module of the run) imports scikit-learn on import again: "
        "check compat.lazy.KERAS_WRAPPERS against keras/__init__.py, and the package's "
        "module-level sklearn imports")
    assert after == ["after", "True"], "keras.wrappers no longer works once used"


def test_a_deferred_module_runs_its_code_once_on_first_use(tmp_path, monkeypatch):
    package = tmp_path / "deferred_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from deferred_pkg import heavy\n")
    (package / "heavy.py").write_text("import sys\nsys.ran = getattr(sys, 'ran', 0) + 1\n"
                                      "VALUE = 42\n")
    (package / "flaky.py").write_text("import sys\nsys.tries = getattr(sys, 'tries', 0) + 1\n"
                                      "if sys.tries == 1:\n    raise RuntimeError('once')\n"
                                      "VALUE = 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "ran", 0, raising=False)
    monkeypatch.setattr(sys, "tries", 0, raising=False)
    with lazy.deferred_modules(("deferred_pkg.heavy", "deferred_pkg.flaky")):
        import deferred_pkg
        import deferred_pkg.flaky as flaky
    try:
        heavy = deferred_pkg.heavy
        assert sys.ran == 0 and heavy.__file__.endswith("heavy.py")  # scanned, not run
        assert heavy.VALUE == 42 and heavy.VALUE == 42 and sys.ran == 1
        with pytest.raises(AttributeError, match="no attribute 'missing'"):
            heavy.missing  # noqa: B018
        assert sys.ran == 1 and type(heavy).__name__ == "module"
        with pytest.raises(RuntimeError, match="once"):  # its code failed: raised ...
            flaky.VALUE  # noqa: B018
        assert flaky.VALUE == 7 and sys.tries == 2  # ... and run again at the next use
    finally:
        for name in ("deferred_pkg", "deferred_pkg.heavy", "deferred_pkg.flaky"):
            sys.modules.pop(name, None)
