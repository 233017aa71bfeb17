"""Searches read every page: a sweep with more jobs than one page of MLflow's search
still has every job in its leaderboard (one search_runs call used to cut it at 10,000)."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from mnist_experiments.tracking import search
from mnist_experiments.workflows.leaderboard import collect_rows

pytestmark = pytest.mark.slow  # a real SQLite store with a few dozen runs

@pytest.fixture
def sweep_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("pages")
    parent = client.create_run(experiment, run_name="sweep-x").info.run_id
    for job in range(25):
        run = client.create_run(experiment, tags={"mlflow.parentRunId": parent,
                                                  "sweep.job_num": str(job),
                                                  "overrides": f"seed={job}"})
        client.log_metric(run.info.run_id, "objective", job / 100)
        client.set_terminated(run.info.run_id, "FINISHED")
    return uri, client, experiment, parent

def test_every_page_is_read(sweep_store):
    uri, client, experiment, parent = sweep_store
    query = f"tags.mlflow.parentRunId = '{parent}'"
    assert len(client.search_runs([experiment], query, max_results=10)) == 10  # one page
    found = list(search.search_all_runs(client, [experiment], query, page_size=10))
    assert len(found) == 25 and len({r.info.run_id for r in found}) == 25

def test_the_leaderboard_has_every_job_beyond_a_page(sweep_store, monkeypatch):
    uri, client, experiment, parent = sweep_store
    monkeypatch.setattr(search, "PAGE_SIZE", 10)
    rows = collect_rows(None, uri, parent)
    assert sorted(int(r["job"]) for r in rows) == list(range(25))
    assert rows[0]["job"] == "24" and rows[0]["best"]
