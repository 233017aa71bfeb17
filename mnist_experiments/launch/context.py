"""Where and how a job was launched: the launch dir, its overrides, its sweep if any.

Light (Hydra only): the Hydra app builds a :class:`JobContext` before anything heavy is
imported; reproduce and grade build one for the runs they start.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from hydra.core.hydra_config import HydraConfig

from mnist_experiments.launch.files import absolute, leads, read_sweep_file, sweep_leader
from mnist_experiments.launch.numerics import available_cores
from mnist_experiments.tracking.store import StoreCreation, resolve_tracking_uri


def job_sweep_info() -> Optional[Dict[str, Any]]:
    """For a job of a multirun: the sweep's tracking URI, experiment and parent run."""
    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if str(getattr(hc.mode, "name", hc.mode)) != "MULTIRUN":
        return None
    info = read_sweep_file(absolute(hc.sweep.dir, hc.runtime.cwd))
    if info is None:
        return None
    return {**info, "job_num": str(hc.job.num), "job_overrides": list(hc.overrides.task)}


def _ray_jobs_at_once() -> Optional[int]:
    """Inside a Ray task: how many tasks of its CPU size this node's Ray CPUs hold at
    once (Ray schedules by its own CPU count, which ``ray start --num-cpus`` may set
    apart from the cores); None outside Ray or when the task asked for no CPU."""
    ray = sys.modules.get("ray")  # imported by the Ray worker already; never here
    if ray is None or not ray.is_initialized():
        return None
    context = ray.get_runtime_context()
    assigned = float(context.get_assigned_resources().get("CPU") or 0)
    node = next((n for n in ray.nodes() if n.get("NodeID") == context.get_node_id()), {})
    node_cpus = float(node.get("Resources", {}).get("CPU") or 0)
    if assigned <= 0 or node_cpus <= 0:
        return None
    return max(1, int(node_cpus // assigned))


def _slurm_jobs_at_once() -> Optional[int]:
    """Inside a SLURM job: how many jobs of its ``--cpus-per-task`` the cores it sees
    hold (1 when SLURM binds it to its CPUs: task/affinity or task/cgroup)."""
    per_task = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if not per_task.isdigit() or int(per_task) < 1:
        return None
    return max(1, available_cores() // int(per_task))


def parallel_jobs(hc: Any, sweep: Optional[Dict[str, Any]]) -> int:
    """How many jobs of this sweep run at once on this machine, sharing its cores: a
    joblib launcher's ``n_jobs`` (negative: joblib's count from the cores); under Ray,
    the tasks of this job's CPUs (``hydra.launcher.ray.remote.num_cpus``, 1 by default)
    that this node's Ray CPUs hold; under SLURM, the jobs of its ``cpus_per_task`` that
    the cores it may use hold. Capped by the sweep's planned jobs and an Optuna
    sweeper's ``n_jobs``; 1 for any other launcher."""
    launcher = hc.launcher
    target = str(launcher.get("_target_", ""))
    if target.endswith("JoblibLauncher"):
        n = int(launcher.get("n_jobs") or 1)
        if n < 0:  # joblib: -1 is every core, -2 all but one, ...
            n = max(1, (os.cpu_count() or 1) + 1 + n)
    elif target.endswith("RayLauncher"):
        n = _ray_jobs_at_once() or 1
    elif target.endswith("SlurmLauncher"):
        n = _slurm_jobs_at_once() or 1
    else:
        return 1
    caps = [(sweep or {}).get("planned_jobs"), hc.sweeper.get("n_jobs")]
    for cap in caps:
        if isinstance(cap, int) and cap > 0:
            n = min(n, cap)
    return max(1, n)


def slurm_job_id() -> Optional[str]:
    """This process's SLURM job as ``squeue`` and ``scancel`` name it (``<array>_<task>``
    for a job array's task, as Submitit submits a sweep), or None outside SLURM."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID")


@dataclass
class JobContext:
    """Where a job was launched from and how (filled from Hydra when it runs the job)."""

    launch_dir: str
    output_dir: Optional[str] = None
    overrides: List[str] = field(default_factory=list)
    tags: Dict[str, str] = field(default_factory=dict)  # extra run tags (e.g. reproduces)
    parent_run_id: Optional[str] = None  # e.g. the sweep's parent run
    tracking_uri: Optional[str] = None  # set for sweep jobs: the sweep's store ...
    experiment_id: Optional[str] = None  # ... and experiment (created once, before the jobs)
    sweep_overrides: List[str] = field(default_factory=list)  # the sweep command's overrides
    parallel_jobs: int = 1  # jobs of this sweep running at once here: they share the cores
    resume: Any = None  # mnist-exp resume=<run>: the run it continues (workflows/resume.py)

    @classmethod
    def from_hydra(cls) -> "JobContext":
        if not HydraConfig.initialized():
            return cls(launch_dir=os.getcwd(), output_dir=None, overrides=[])
        hc = HydraConfig.get()
        context = cls(
            launch_dir=hc.runtime.cwd,
            output_dir=hc.runtime.output_dir,
            overrides=list(hc.overrides.task),
        )
        sweep = job_sweep_info()
        if sweep is not None:
            context.parent_run_id = sweep["parent_run_id"]
            context.tracking_uri = sweep["tracking_uri"]
            context.experiment_id = sweep["experiment_id"]
            context.sweep_overrides = list(sweep.get("overrides") or [])
            context.parallel_jobs = parallel_jobs(hc, sweep)
            context.tags.update({"sweep.job_num": sweep["job_num"],
                                 "sweep.dir": sweep["sweep_dir"]})
            slurm_job = slurm_job_id()
            if slurm_job:  # its log files, and what scancel takes
                context.tags["slurm.job_id"] = slurm_job
        return context

    def draws_figures(self, viz: Any, objective: Optional[float]) -> Tuple[bool, str]:
        """Whether a run with this ``objective`` draws its figures, and why not if not.

        Every run does, except a sweep job under ``viz.sweep_figures=best`` that does not
        lead the sweep's jobs finished so far as its leaderboard ranks them (a lower
        objective, or the same as a lower-numbered job's): the figures of a sweep are
        then drawn by the few jobs that led it when they ended, among them always its
        best job, instead of by every job (seconds each).
        """
        policy = getattr(viz.get("sweep_figures", "best"), "value", None) or \
            str(viz.get("sweep_figures", "best"))
        if self.parent_run_id is None or policy == "all" or objective is None \
                or "sweep.dir" not in self.tags:
            return True, ""
        leader = sweep_leader(Path(self.tags["sweep.dir"]), self.parent_run_id)
        if leads(objective, self.tags.get("sweep.job_num", ""), leader):
            return True, ""
        below = (f"is below the sweep's best so far ({leader[0]:.4f})" if objective < leader[0]
                 else f"ties with job {leader[1]}'s, which ranks first")
        return False, (f"objective {objective:.4f} {below}; viz.sweep_figures=all draws them "
                       "for every job")

    def start_store_creation(self, cfg: Any) -> StoreCreation:
        """Start building a brand-new SQLite store in a helper process (see
        :class:`~mnist_experiments.tracking.store.StoreCreation`), so that it overlaps
        with the heavy imports and the data loading; nothing to do for sweep jobs, whose
        sweep made the store."""
        if self.experiment_id is not None:
            return StoreCreation()
        uri = resolve_tracking_uri(cfg.mlflow.tracking_uri, self.launch_dir)
        return StoreCreation.start(uri, str(cfg.mlflow.experiment_name))
