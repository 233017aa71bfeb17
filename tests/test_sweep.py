"""Sweeps: multirun grids (sequential and parallel), Optuna, failures, k-fold nesting."""

from __future__ import annotations

import json
import os

import pytest
from mlflow.tracking import MlflowClient

from conftest import parent_and_children, read_summary, run_cli, store_uri, sweep_dir

pytestmark = pytest.mark.slow  # every test runs a sweep (training) in a subprocess

QUICK = ["data=digits", "data.limit=300", "train.epochs=1", "viz=off", "mlflow.log_model=false"]


def test_parallel_grid_on_a_fresh_store(tmp_path):
    result = run_cli(["-m", *QUICK, "mlflow.log_model=true", "mlflow.register_as=sweep-best",
                      "optimizer=adam,sgd", "model=seed_tiny,lenet5",
                      "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    uri = store_uri(tmp_path)
    parent, children, runs = parent_and_children(uri)
    assert len(runs) == 5  # one parent, four jobs, nothing else
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    assert parent.info.status == "FINISHED"
    assert all(r.info.experiment_id != "0" for r in runs)  # none in the Default experiment
    assert sorted(c.data.tags["sweep.job_num"] for c in children) == ["0", "1", "2", "3"]
    # each job's run is named by what sets it apart, not by the overrides all jobs share
    assert sorted(c.info.run_name for c in children) == [
        "optimizer=adam,model=lenet5", "optimizer=adam,model=seed_tiny",
        "optimizer=sgd,model=lenet5", "optimizer=sgd,model=seed_tiny"]
    # two jobs at a time share the cores: each its share of threads, recorded
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    assert {c.data.params["train.threads"] for c in children} == {str(share)}
    # a unique output dir per job
    assert len({c.data.tags["hydra.output_dir"] for c in children}) == 4

    directory = sweep_dir(tmp_path)
    rows = read_summary(directory)
    assert len(rows) == 4
    objectives = [float(r["objective"]) for r in rows]
    assert objectives == sorted(objectives, reverse=True)
    assert rows[0]["best"] == "True" and [r["best"] for r in rows[1:]] == ["False"] * 3
    assert (directory / "summary.md").read_text().count("| FINISHED |") == 4
    assert (directory / "objective_per_job.png").stat().st_size > 1000
    assert (directory / "objective_by_optimizer.png").exists()

    # logged to the parent: best_* metrics, the best run id, the summary files
    client = MlflowClient(uri)
    assert parent.data.metrics["best_objective"] == max(objectives)
    best = client.get_run(parent.data.tags["best_run_id"])
    assert best.data.metrics["objective"] == max(objectives)
    # mlflow.register_as in a sweep registers the best job's model only
    versions = client.search_model_versions("name = 'sweep-best'")
    assert [v.run_id for v in versions] == [best.info.run_id]
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "summary")}
    assert {"summary/summary.csv", "summary/summary.md"} <= logged
    assert {"sweep/config.yaml", "sweep/sweep.yaml"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id, "sweep")}

    # the report can be rebuilt afterwards, from the sweep dir or the parent run id
    out = tmp_path / "rebuilt"
    rebuilt = run_cli([str(directory), "--out", str(out)], tmp_path,
                      module="mnist_experiments.commands.report")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert read_summary(out) == rows
    by_id = run_cli([parent.info.run_id, "--out", str(tmp_path / "by_id")], tmp_path,
                    module="mnist_experiments.commands.report")
    assert by_id.returncode == 0, by_id.stderr
    assert read_summary(tmp_path / "by_id") == rows


def test_optuna_search_names_the_best_trial(tmp_path):
    result = run_cli(["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=3", *QUICK], tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    parent, children, _ = parent_and_children(store_uri(tmp_path))
    assert len(children) == 3
    rows = read_summary(sweep_dir(tmp_path))
    assert len(rows) == 3
    best = rows[0]
    assert best["best"] == "True"
    assert parent.data.tags["best_run_id"] == best["run_id"]
    assert float(best["objective"]) == max(float(r["objective"]) for r in rows)
    assert "Best: job " + best["job"] in (sweep_dir(tmp_path) / "summary.md").read_text()


def test_a_failed_job_keeps_the_others_and_is_marked(tmp_path):
    # train.epochs=0 is rejected by the schema inside that job only
    result = run_cli(["-m", *QUICK, "train.epochs=1,0,1", "seed=1"], tmp_path)
    assert result.returncode != 0
    assert "train.epochs=0" in result.stderr
    parent, children, _ = parent_and_children(store_uri(tmp_path))
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
    assert parent.info.status == "FAILED"
    rows = read_summary(sweep_dir(tmp_path))
    assert [r["status"] for r in rows] == ["FINISHED", "FINISHED", "FAILED"]
    failed = rows[-1]
    assert failed["job"] == "1" and "train.epochs=0" in failed["error"]
    assert json.loads((sweep_dir(tmp_path) / "1" / "job.json").read_text())["status"] == "FAILED"


def test_kfold_sweep_nests_folds_under_job_runs(tmp_path):
    result = run_cli(["-m", *QUICK, "cv=kfold", "cv.folds=2", "cv.refit=false",
                      "optimizer=adam,sgd"], tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    parent, jobs, runs = parent_and_children(store_uri(tmp_path))
    assert len(jobs) == 2 and len(runs) == 1 + 2 + 4
    for job in jobs:
        folds = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == job.info.run_id]
        assert sorted(f.info.run_name for f in folds) == ["fold-1", "fold-2"]
        assert "cv_val_accuracy_mean" in job.data.metrics


def test_only_jobs_that_lead_the_sweep_draw_figures(tmp_path):
    """viz.sweep_figures=best (the default): a job draws its figures only if it is the best
    job so far when it ends, so the sweep's best job has them and the others skip seconds
    of drawing; each job still logs its metrics, reports and model."""
    result = run_cli(["-m", "data=digits", "data.limit=300", "viz.activations=false",
                      "mlflow.log_model=true", "train.epochs=3,1", "seed=1"], tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    client = MlflowClient(store_uri(tmp_path))
    _, children, _ = parent_and_children(store_uri(tmp_path))
    jobs = sorted(children, key=lambda c: int(c.data.tags["sweep.job_num"]))
    best_so_far = -1.0
    for run in jobs:  # a sequential sweep: job order is the order they ended in
        objective = run.data.metrics["objective"]
        paths = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        logged = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"model", "metrics"} <= logged  # the model and the reports, always
        if objective > best_so_far:  # a tie: the earlier job ranks first and has them
            assert "plots/confusion_matrix.png" in paths and "figures" not in run.data.tags
        else:
            assert paths == set()
            assert run.data.tags["figures"].startswith(f"not drawn: objective {objective:.4f}")
        best_so_far = max(best_so_far, objective)
    assert jobs[1].data.metrics["objective"] < jobs[0].data.metrics["objective"]  # 1 vs 3 epochs
    assert "figures not drawn" in result.stdout + result.stderr
    best = json.loads((sweep_dir(tmp_path) / "best_so_far.json").read_text())
    assert best["objective"] == jobs[0].data.metrics["objective"] and best["job"] == "0"
