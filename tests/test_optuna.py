"""The Optuna sweeper (hydra_plugins/mnist_exp_optuna, Optuna >= 4): a stored study that
resumes to its total number of trials, pruning, and what the search found (importances,
parallel coordinates) on the parent run. Real sweeps of real CLI processes."""

from __future__ import annotations

import json
import signal

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from conftest import all_runs, run_cli, store_uri
from faults import Job

pytestmark = pytest.mark.slow  # every test runs an Optuna sweep in a subprocess

QUICK = ["hparams_search=optuna", "data=digits", "data.limit=300", "viz=off",
         "mlflow.log_model=false"]


def _study(tmp_path, sweep_dir):
    return optuna.load_study(study_name=f"mnist-exp-{sweep_dir.name}",
                             storage=f"sqlite:///{tmp_path / 'optuna.db'}")


def _states(study):
    counts = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def test_an_interrupted_search_resumes_to_its_total_number_of_trials(tmp_path):
    sweep_dir = tmp_path / "search"
    args = [*QUICK, "train.epochs=2", "hydra.sweeper.n_trials=6", "hydra.sweeper.pruner=none",
            f"hydra.sweep.dir={sweep_dir}"]
    job = Job(["-m", *args], tmp_path)
    job.wait_until(lambda: (sweep_dir / "2").is_dir())  # 2 trials done, the 3rd started
    job.signal(signal.SIGINT, group=True)
    output = job.finish()
    assert job.returncode == 130, output
    before = _states(_study(tmp_path, sweep_dir))
    assert before.get("COMPLETE", 0) >= 2 and "RUNNING" not in before, before

    again = run_cli(["-m", *args], tmp_path)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "finished before, continuing" in again.stdout + again.stderr
    study = _study(tmp_path, sweep_dir)
    after = _states(study)
    # 6 finished in total (not 6 more); the interrupted trial failed, nothing RUNNING
    assert after["COMPLETE"] == 6 and after.get("FAIL", 0) >= 1 and "RUNNING" not in after
    runs = all_runs(store_uri(tmp_path))
    assert not [r for r in runs if r.info.status == "RUNNING"]
    (parent,) = [r for r in runs if r.data.tags.get("sweep") == "true"]  # the same parent
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.resumed"] == "1"
    # the resumed search drew new settings, not the first trials' again (a sampler
    # seeded as at the start repeats its first draws)
    settings = [tuple(sorted(t.params.items())) for t in study.get_trials(deepcopy=False)]
    assert len(set(settings)) == len(settings), settings
    # job numbers are trial numbers: none collides, every trial has its own job dir
    numbers = [t.number for t in study.get_trials(deepcopy=False)]
    assert sorted(int(p.name) for p in sweep_dir.iterdir() if p.name.isdigit()) == numbers
    jobs = [json.loads((sweep_dir / str(n) / "job.json").read_text()) for n in numbers
            if (sweep_dir / str(n) / "job.json").exists()]
    assert sum(j["status"] == "FINISHED" for j in jobs) == 6


def test_a_pruned_search_prunes_and_says_what_mattered(tmp_path):
    # a hopeless learning rate among good ones: the median pruner stops those trials
    result = run_cli(["-m", *QUICK, "train.epochs=4", "hydra.sweeper.n_trials=8",
                      # its first 4 trials (never pruned) are 3 good, 1 hopeless; then
                      # hopeless ones come (checked: RandomSampler(seed=10) on this space)
                      "hydra.sweeper.sampler=random", "hydra.sweeper.seed=10",
                      "hydra.sweeper.pruner=median", "optimizer=adam",
                      "optimizer.learning_rate=choice(0.003,0.0000001)",
                      "mlflow.log_model=true"], tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    (sweep_dir,) = (tmp_path / "outputs" / "multirun").iterdir()
    study = _study(tmp_path, sweep_dir)
    pruned = study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
    hopeless = [t for t in study.get_trials(deepcopy=False)
                if t.number >= 4 and t.params["optimizer.learning_rate"] == 1e-7]
    assert hopeless and {t.number for t in hopeless} <= {t.number for t in pruned}

    client = MlflowClient(store_uri(tmp_path))
    runs = all_runs(store_uri(tmp_path))
    (parent,) = [r for r in runs if r.data.tags.get("sweep") == "true"]
    by_job = {r.data.tags["sweep.job_num"]: r for r in runs if r is not parent}
    with_model = {m.source_run_id for m in
                  client.search_logged_models([parent.info.experiment_id])}
    for trial in pruned:
        run = by_job[str(trial.number)]
        assert run.info.status == "FINISHED" and run.data.tags["pruned"] == "true"
        epochs = client.get_metric_history(run.info.run_id, "val_accuracy")
        stopped = int(run.data.tags["pruned_at_epoch"])
        assert [m.step for m in epochs] == list(range(1, stopped + 1)) and stopped < 4
        # abandoned as Optuna abandons a pruned trial: not tested, no model
        assert "test_accuracy" not in run.data.metrics and "fit_seconds" in run.data.metrics
        assert run.data.tags["test"] == "not evaluated: the trial was pruned"
        assert run.info.run_id not in with_model
    complete = [by_job[str(t.number)] for t in
                study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    assert complete and all("test_accuracy" in r.data.metrics for r in complete)
    assert {r.info.run_id for r in complete} <= with_model
    # the leaderboard lists them as PRUNED, after the finished jobs, and not as failures
    rows = (sweep_dir / "summary.csv").read_text()
    assert rows.count(",PRUNED,") == len(pruned)
    assert f"{len(pruned)} pruned (stopped early by the Optuna pruner), 0 failed" in \
        (sweep_dir / "summary.md").read_text()
    assert parent.info.status == "FINISHED"

    # what the search found, on the parent run
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "optuna")}
    assert {"optuna/importances.json", "optuna/parallel_coordinate.png",
            "optuna/param_importances.png"} <= logged
    importances = json.loads((sweep_dir / "optuna" / "importances.json").read_text())
    assert set(importances) == {"optimizer.learning_rate", "model.conv_blocks.0.filters",
                                "model.conv_blocks.0.dropout", "train.batch_size"}
    assert parent.data.metrics["importance.optimizer.learning_rate"] == \
        pytest.approx(importances["optimizer.learning_rate"])
    assert (sweep_dir / "optuna" / "parallel_coordinate.png").stat().st_size > 10_000


def test_the_sweeper_is_known_to_hydra_and_parses_the_search_space():
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper
    from hydra_plugins.mnist_exp_optuna.optuna_sweeper import OptunaSweeper

    from mnist_experiments.config.schema import register_configs
    from mnist_experiments.launch.study import search_space

    register_configs()  # as mnist-exp does: the plugin is known even in an editable install
    assert OptunaSweeper in Plugins.instance().discover(Sweeper)

    space, fixed = search_space(
        {"optimizer": "choice(adam, sgd)", "train.batch_size": "range(16, 80, 16)",
         "optimizer.learning_rate": "tag(log, interval(0.0001, 0.03))"},
        ["optimizer=adam", "model.conv_blocks.0.dropout=interval(0, 0.5)", "seed=3"])
    assert fixed == ["optimizer=adam", "seed=3"]  # the command line fixes the optimizer
    assert space["train.batch_size"].low == 16 and space["train.batch_size"].high == 64
    assert space["optimizer.learning_rate"].log
    assert space["model.conv_blocks.0.dropout"].high == 0.5


def test_a_bad_pruner_is_refused_before_any_run(tmp_path):
    result = run_cli(["-m", *QUICK, "hydra.sweeper.pruner=sometimes"], tmp_path)
    assert result.returncode == 1
    assert "hydra.sweeper.pruner=sometimes is refused" in result.stderr
    assert "median, hyperband, none" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_a_bad_pruner_setting_is_refused_before_any_run(tmp_path):
    result = run_cli(["-m", *QUICK, "hydra.sweeper.warmup_epochs=-1"], tmp_path)
    assert result.returncode == 1
    assert "hydra.sweeper.warmup_epochs=-1 is not a count" in result.stderr
    assert "Traceback" not in result.stderr and "sweep parent run" not in result.stderr
    assert not all_runs(store_uri(tmp_path))
