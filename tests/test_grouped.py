"""A seed sweep's grouped leaderboard: one row per configuration with its spread over
seeds, and a test of whether the best configuration beats the runner-up."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from conftest import compose_cfg, run_cli, store_uri
from mnist_experiments.config.identity import config_id
from mnist_experiments.workflows import grouped
from mnist_experiments.workflows.leaderboard import to_csv


def _rows(objectives, config, seeds=None, accuracy=None):
    seeds = seeds or range(1, len(objectives) + 1)
    return [{"status": "FINISHED", "config_id": config, "seed": str(s),
             "overrides": f"optimizer={config} seed={s}", "objective": o,
             "test_accuracy": (accuracy or objectives)[i], "run_id": f"{config}{s}"}
            for i, (s, o) in enumerate(zip(seeds, objectives))]


def test_config_id_ignores_the_seed_and_tracking_keys_only():
    base = config_id(compose_cfg("seed=1"))
    assert config_id(compose_cfg("seed=2", "viz=off", "mlflow.run_name=x")) == base
    assert config_id(compose_cfg("seed=1", "optimizer=adam")) != base
    assert config_id(compose_cfg("seed=1", "train.epochs=6")) != base
    assert len(base) == 12 and int(base, 16) >= 0


def test_each_configuration_gets_its_mean_spread_and_interval():
    rows = _rows([0.90, 0.92, 0.94], "adam") + _rows([0.80, 0.85, 0.78], "sgd")
    rows.append({"status": "FAILED", "config_id": "sgd", "seed": "4", "objective": None})
    assert grouped.varies_seed(rows)
    groups = grouped.group_rows(rows)
    assert [(g["config_id"], g["n"], g["configuration"]) for g in groups] == [
        ("adam", 3, "optimizer=adam"), ("sgd", 3, "optimizer=sgd")]
    best = groups[0]
    assert best["objective_mean"] == pytest.approx(0.92)
    assert best["objective_std"] == pytest.approx(0.02)  # sample standard deviation
    half = 4.302652729911275 * 0.02 / np.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert best["objective_ci95_low"] == pytest.approx(0.92 - half)
    assert best["objective_ci95_high"] == pytest.approx(0.92 + half)
    assert best["seeds"] == "1 2 3"
    table = list(csv.DictReader(io.StringIO(to_csv(groups, grouped.COLUMNS))))
    assert list(table[0])[:8] == ["rank", "config_id", "configuration", "n", "objective_mean",
                                  "objective_std", "objective_ci95_low", "objective_ci95_high"]
    assert "test_accuracy_ci95_high" in table[0]


def test_the_best_is_significantly_better_only_beyond_the_seeds_spread():
    clear = grouped.group_rows(_rows([0.90, 0.92, 0.94], "a") + _rows([0.80, 0.82, 0.81], "b"))
    verdict = grouped.compare_best(clear)
    assert verdict.significant and verdict.p_value < 0.01
    close = grouped.group_rows(_rows([0.90, 0.95, 0.85], "a") + _rows([0.89, 0.84, 0.93], "b"))
    verdict = grouped.compare_best(close)
    assert not verdict.significant and verdict.p_value > 0.3
    assert "not significantly better" in verdict.sentence(close)
    assert "Welch's t-test" in verdict.sentence(close)
    single = grouped.group_rows(_rows([0.9, 0.91], "a") + _rows([0.8], "b", seeds=[1]))
    assert grouped.compare_best(single).p_value is None  # one run: nothing to test


def test_a_sweep_without_repeated_seeds_is_not_grouped():
    rows = _rows([0.9], "a", seeds=[1]) + _rows([0.8], "b", seeds=[1])
    assert not grouped.varies_seed(rows)


@pytest.mark.slow
def test_a_seed_sweep_writes_the_grouped_table_and_tells_the_parent(tmp_path):
    done = run_cli(["-m", "data=digits", "data.limit=300", "train.epochs=2", "viz=off",
                    "mlflow.log_model=false", "optimizer=adam,sgd", "seed=1,2,3",
                    f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    assert done.returncode == 0, done.stderr
    table = list(csv.DictReader((tmp_path / "sweep" / "summary_grouped.csv").open()))
    assert sorted(r["configuration"] for r in table) == ["optimizer=adam", "optimizer=sgd"]
    assert all(r["n"] == "3" and r["seeds"] == "1 2 3" for r in table)
    summary = (tmp_path / "sweep" / "summary.md").read_text()
    assert "## Grouped over seeds" in summary and "Welch's t-test" in summary

    from mlflow.tracking import MlflowClient

    client = MlflowClient(store_uri(tmp_path))
    runs = client.search_runs(["1"])
    parent = next(r for r in runs if r.info.run_name.startswith("sweep-"))
    children = [r for r in runs if r is not parent]
    ids = {r.data.params["optimizer._target_"]: set() for r in children}
    for r in children:
        ids[r.data.params["optimizer._target_"]].add(r.data.tags["config_id"])
    assert all(len(v) == 1 for v in ids.values()) and len(set.union(*ids.values())) == 2
    # sweep jobs sample no system metrics unless asked (mlflow.system_metrics=true)
    assert not any(k.startswith("system/") for r in children for k in r.data.metrics)
    assert parent.data.metrics["grouped_best_n"] == 3
    assert parent.data.metrics["grouped_configurations"] == 2
    assert parent.data.tags["grouped_best_config_id"] == table[0]["config_id"]
    assert "grouped_p_value" in parent.data.metrics
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "summary")
            if a.path.endswith("summary_grouped.csv")]
    note = parent.data.tags["mlflow.note.content"]  # the parent's description
    best = next(r for r in children if r.info.run_id == parent.data.tags["best_run_id"])
    assert f"[its run](#/experiments/1/runs/{best.info.run_id}?workflowType=machine_learning)" in note
    assert "Welch's t-test" in note and note.count("| FINISHED |") == 6
    assert parent.data.params["best.optimizer"] in ("adam", "sgd")
    assert parent.data.params["best.seed"] == best.data.params["seed"]
