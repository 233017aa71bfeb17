"""viz.sweep_figures: which jobs of a sweep draw figures, judged by the best so far.

The sweep itself is tested in test_sweep.py; here the decision and its shared file,
including jobs of a parallel sweep that end at the same moment.
"""

from __future__ import annotations

import multiprocessing

from omegaconf import OmegaConf

from mnist_experiments.config.schema import VizConfig
from mnist_experiments.launch.context import JobContext
from mnist_experiments.launch.files import BEST_FILE, record_objective, sweep_leader

PARENT = "p" * 32


def best_so_far(sweep_dir, parent):
    leader = sweep_leader(sweep_dir, parent)
    return None if leader is None else leader[0]


def job(sweep_dir, policy="best", number="5"):
    viz = OmegaConf.merge(OmegaConf.structured(VizConfig), {"sweep_figures": policy})
    context = JobContext(launch_dir=str(sweep_dir), parent_run_id=PARENT,
                         tags={"sweep.dir": str(sweep_dir), "sweep.job_num": number})
    return lambda objective: context.draws_figures(viz, objective)


def test_the_best_so_far_is_kept_per_sweep(tmp_path):
    assert best_so_far(tmp_path, PARENT) is None
    record_objective(tmp_path, PARENT, "0", 0.90)
    record_objective(tmp_path, PARENT, "1", 0.85)  # worse: not kept
    assert best_so_far(tmp_path, PARENT) == 0.90
    record_objective(tmp_path, PARENT, "2", 0.95)
    assert best_so_far(tmp_path, PARENT) == 0.95
    assert best_so_far(tmp_path, "another parent") is None  # an older sweep's file
    (tmp_path / BEST_FILE).write_text("{not json")
    assert best_so_far(tmp_path, PARENT) is None  # unreadable: every job draws


def test_a_job_draws_unless_a_finished_job_was_better(tmp_path):
    draws = job(tmp_path)
    assert draws(0.5) == (True, "")  # the first job
    record_objective(tmp_path, PARENT, "3", 0.9)
    # a tie ranks by job number, as the leaderboard does: the best job has its figures
    assert draws(0.9) == (False, "objective 0.9000 ties with job 3's, which ranks first; "
                                 "viz.sweep_figures=all draws them for every job")
    assert job(tmp_path, number="2")(0.9) == (True, "")  # job 2 ended after job 3
    record_objective(tmp_path, PARENT, "7", 0.9)  # a tie by a later job: 3 stays the leader
    assert sweep_leader(tmp_path, PARENT) == (0.9, "3")
    record_objective(tmp_path, PARENT, "2", 0.9)
    assert sweep_leader(tmp_path, PARENT) == (0.9, "2")
    drawn, why = draws(0.8)
    assert not drawn
    assert why == ("objective 0.8000 is below the sweep's best so far (0.9000); "
                   "viz.sweep_figures=all draws them for every job")
    assert job(tmp_path, "all")(0.8) == (True, "")
    single = JobContext(launch_dir=str(tmp_path))  # not a sweep job: always
    assert single.draws_figures(OmegaConf.structured(VizConfig), 0.1) == (True, "")


def _record(args):
    sweep_dir, value = args
    record_objective(sweep_dir, PARENT, str(value), value / 100)


def test_jobs_ending_together_keep_the_maximum(tmp_path):
    values = list(range(40))
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_record, [(tmp_path, v) for v in values[::-1]], chunksize=1)
    assert best_so_far(tmp_path, PARENT) == max(values) / 100
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == [BEST_FILE]
