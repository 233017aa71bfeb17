"""A seed sweep in the MLflow UI, as a user browses it: a real 4-job ``mnist-exp -m``
sweep, a real ``mlflow server`` over its store and Debian's headless Chromium.

What a user must see: the experiment opens on its training runs (not MLflow's GenAI
page), the sweep's parent unfolds to its jobs, the charts view draws ``val_accuracy``
per epoch for every job, "Group by" ``config_id`` shows one row per configuration,
and every run lists its datasets. Skipped without a browser, as ``tests/test_ui.py``.
"""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from conftest import UI_HEIGHT, UI_WIDTH, all_runs, cli_env, run_cli, store_uri
from ui_helpers import (
    MLFLOW_UI_PREFERENCES,
    MlflowServer,
    expand_run,
    filter_charts,
    goto,
    group_runs_by,
    mlflow_page,
    page_text,
    run_page_url,
    runs_page_url,
    wait_for_chart_series,
    wait_for_texts,
)

pytestmark = pytest.mark.slow  # a sweep, an mlflow server and a browser

EPOCHS = 2
SWEEP = ["-m", "data=digits", "data.limit=300", f"train.epochs={EPOCHS}", "viz=off",
         "mlflow.log_model=false", "optimizer=adam,sgd", "seed=1,2"]
# What the side bar lists in MLflow's GenAI view, and not in its Model training view
GENAI_NAV = ["Training runs", "Observability", "Judges"]
JOBS = ["optimizer=adam,seed=1", "optimizer=adam,seed=2", "optimizer=sgd,seed=1",
        "optimizer=sgd,seed=2"]


@pytest.fixture(scope="module")
def sweep(chromium_exe, tmp_path_factory):
    """The sweep's store, parent and jobs (``chromium_exe`` first: no browser, no sweep)."""
    workdir = tmp_path_factory.mktemp("ui-sweep")
    done = run_cli(SWEEP, workdir)
    assert done.returncode == 0, done.stderr[-4000:]
    uri = store_uri(workdir)
    runs = all_runs(uri)
    (parent,) = [r for r in runs if r.data.tags.get("sweep") == "true"]
    jobs = {r.info.run_name: r for r in runs if r is not parent}
    assert sorted(jobs) == JOBS
    return {"uri": uri, "parent": parent, "jobs": jobs,
            "experiment_id": parent.info.experiment_id}


@pytest.fixture(scope="module")
def server(sweep, tmp_path_factory):
    with MlflowServer(sweep["uri"], tmp_path_factory.mktemp("ui-sweep-server"),
                      env=cli_env(), startup_timeout=180) as srv:
        yield srv


def test_the_printed_link_opens_the_model_training_view_on_a_first_visit(chromium_exe, server,
                                                                        sweep):
    """A browser that never chose "Model training" (MLflow's default is its GenAI view):
    the link ``mnist-exp`` prints opens the run in the Model training view."""
    first_visit = {k: v for k, v in MLFLOW_UI_PREFERENCES.items() if "workflowType" not in k}
    job = sweep["jobs"][JOBS[0]]
    with mlflow_page(chromium_exe, width=UI_WIDTH, height=UI_HEIGHT, env=cli_env(),
                     preferences=first_visit) as fresh:
        goto(fresh, run_page_url(server.url, sweep["experiment_id"], job.info.run_id))
        text = wait_for_texts(fresh, [JOBS[0], "Datasets", "Model metrics"], timeout=120)
        assert not any(genai in text for genai in GENAI_NAV), text[:500]
        # and the experiment's link goes to its runs table, in the same view
        fresh.get_by_role("link", name="Runs").first.click()
        text = wait_for_texts(fresh, [sweep["parent"].info.run_name, "matching runs"])
        assert not any(genai in text for genai in GENAI_NAV), text[:500]
        assert "workflowType=machine_learning" in fresh.url


def test_the_experiment_opens_on_its_runs_and_the_parent_unfolds(page, server, sweep):
    goto(page, runs_page_url(server.url, sweep["experiment_id"]))
    parent = sweep["parent"].info.run_name
    # the "Model training" view: its runs table, not the GenAI overview's traces
    text = wait_for_texts(page, ["Model training", parent, "5 matching runs", "Dataset"],
                          timeout=120)
    assert not any(job in text for job in JOBS)  # folded under the parent
    expand_run(page, parent, JOBS[0])
    text = wait_for_texts(page, JOBS)
    # the Dataset column names each job's data: name and digest (its fingerprint)
    for run in sweep["jobs"].values():
        assert f"digits-training ({run.data.tags['data.fingerprint'][:36]})" in text
    assert "Training" in text and "Validation" in text


def test_the_charts_draw_val_accuracy_per_epoch_for_every_job(page, server, sweep):
    goto(page, runs_page_url(server.url, sweep["experiment_id"], charts=True))
    wait_for_texts(page, ["Model metrics", sweep["parent"].info.run_name], timeout=120)
    expand_run(page, sweep["parent"].info.run_name, JOBS[0])
    filter_charts(page, "val_accuracy")
    series = wait_for_chart_series(page, JOBS)
    client = MlflowClient(sweep["uri"])
    drawn = {s["name"]: s for s in series}
    for name, run in sweep["jobs"].items():
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        # one point per epoch, at the values the run logged
        assert drawn[name]["x"] == [m.step for m in history] == list(range(1, EPOCHS + 1))
        assert drawn[name]["y"] == pytest.approx([m.value for m in history])
    assert sweep["parent"].info.run_name not in drawn  # the parent has no epochs


def test_group_by_config_id_shows_one_row_per_configuration(page, server, sweep):
    goto(page, runs_page_url(server.url, sweep["experiment_id"]))
    wait_for_texts(page, [sweep["parent"].info.run_name], timeout=120)
    group_runs_by(page, "config_id")
    config_ids = {r.data.tags["config_id"] for r in sweep["jobs"].values()}
    assert len(config_ids) == 2  # adam and sgd; the seeds share a config_id
    text = wait_for_texts(page, ["Group by: config_id", *JOBS, "Additional runs"])
    groups = page.locator(".ag-row", has_text="Group:")
    assert groups.count() == 2, page_text(page)[:3000]
    shown = " ".join(groups.nth(i).inner_text() for i in range(groups.count()))
    for config_id in config_ids:
        # each group is named by its config_id and counts its 2 seeds
        assert f"Group: {config_id}\n2\n" in shown, shown
    assert "Additional runs" in text  # the parent, which has no config_id


def test_a_job_lists_its_three_datasets(page, server, sweep):
    run = sweep["jobs"]["optimizer=adam,seed=1"]
    goto(page, run_page_url(server.url, sweep["experiment_id"], run.info.run_id))
    wait_for_texts(page, ["Datasets", "digits-training ("], timeout=120)
    page.get_by_text("digits-training (").first.click()
    digest = run.data.tags["data.fingerprint"][:36]
    text = wait_for_texts(page, ["3 datasets used", f"digits-validation ({digest})",
                                 f"digits-test ({digest})", "features shape: [270,28,28]"])
    assert f"Digest: {digest}" in text.replace("\n", " ").replace(":  ", ": ")
