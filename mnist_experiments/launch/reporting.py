"""One paragraph for a config that does not compose, instead of Hydra's report.

Hydra reports a composition error with its own wording, the config search path and
"Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace". For the
errors a user makes (an unknown option or key, a value of the wrong type, an override
that does not parse, any :class:`~mnist_experiments.errors.UserError`), :func:`describe`
says in one paragraph which value is wrong and what the choices are; the commands print
it and exit with status 1 (``compat.report_errors_with``). Anything else is a bug and
keeps Hydra's report, traceback hint included; ``HYDRA_FULL_ERROR=1`` still shows
everything.

:func:`discard_output_dir`: a single run whose config is refused before it starts
leaves no ``outputs/runs/<date>`` behind.

Light: Hydra and OmegaConf only.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import shutil
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import List, Optional

from hydra.core.hydra_config import HydraConfig
from hydra.errors import (
    CompactHydraException,
    ConfigCompositionException,
    MissingConfigException,
    OverrideParseException,
)
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from mnist_experiments.compat import slurm as slurm_compat
from mnist_experiments.errors import UserError
from mnist_experiments.launch import signals

GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"
HELP = "mnist-exp --help lists every group, option and key."


def describe(exc: BaseException) -> Optional[str]:
    """The paragraph for a user's mistake in ``exc``, or None (a bug: Hydra reports it).

    An error raised after this process received SIGINT or SIGTERM is the signal's
    doing, not the user's: it is raised as that interruption instead (see
    :func:`~mnist_experiments.launch.signals.raise_interruption`).
    """
    signals.raise_interruption(exc)
    if isinstance(exc, UserError):
        return str(exc).strip()
    if isinstance(exc, signals.JobStopped):  # a SLURM job's scancel, a Ray worker's end
        return (f"a job of the sweep was {exc}, and the other jobs ran to their end. "
                "Run the same command again with hydra.sweep.dir=<this sweep's dir> to run "
                "the stopped job (and only it) again.")
    if isinstance(exc, BrokenProcessPool):  # joblib's TerminatedWorkerError too
        return _a_worker_died()
    dead = slurm_compat.died_job(exc)
    if dead is not None:
        return _a_slurm_job_died(dead)
    if isinstance(exc, MissingConfigException):
        return _missing_option(exc)
    if isinstance(exc, OverrideParseException):
        message = _first_line(exc.message)
        return f"cannot read the override {exc.override!r}: {message}. See {GRAMMAR}"
    cause = exc.__cause__
    if isinstance(exc, ConfigCompositionException) and isinstance(cause, OmegaConfBaseException):
        return _bad_override(str(exc), cause)
    if isinstance(exc, CompactHydraException):
        return " ".join(_without_search_path(str(exc)))
    if isinstance(exc, ValueError) and _raised_in_hydra_composition(exc):
        if "Config group override must be a string" in str(exc):  # e.g. optimizer=null
            return ("a config group cannot be null: choose one of its options (e.g. "
                    f"optimizer=adam). {HELP}")
        return f"the overrides do not compose: {_first_line(exc)}. {HELP}"
    return None


def _a_worker_died() -> str:
    """The paragraph for a parallel sweep whose launcher lost a worker process; the
    sweep is ended first (its runs, parent run and leaderboard), so that the paragraph
    can say how it ended."""
    from mnist_experiments.launch.callback import MlflowSweepCallback  # (MLflow: only now)

    return ("a worker process of the sweep died before its jobs ended (killed by a "
            "signal: most often the kernel's out-of-memory killer, see `dmesg`), and the "
            "launcher stopped the others. "
            + _ended_and_how_to_continue(MlflowSweepCallback.end_after_a_worker_died(),
                                         ", with fewer jobs at a time if memory is short "
                                         "(hydra.launcher.n_jobs=1)"))


def _ended_and_how_to_continue(ended: Optional[dict], fix: str) -> str:
    """The end of a paragraph for a sweep that lost a job's process: how its runs ended
    (``ended``: the callback's account and sweep dir, None if no sweep ran here) and the
    command that runs the rest, with ``fix``."""
    where = ended["sweep_dir"] if ended else "<this sweep's dir>"
    return ((f"Their runs are marked KILLED: {ended['account']}. " if ended else "")
            + f"Run the same command again with hydra.sweep.dir={where} to run only the "
            f"jobs that did not finish{fix}.")


def _a_slurm_job_died(dead: dict) -> str:
    """The paragraph for a SLURM sweep one of whose jobs ended without its result (its
    process was killed, or its node failed); the sweep is ended first."""
    from mnist_experiments.launch.callback import MlflowSweepCallback  # (MLflow: only now)

    ended = MlflowSweepCallback.end_after_a_slurm_job_died(dead["job"])
    log = Path(ended["sweep_dir"] if ended else "<this sweep's dir>") / ".submitit" / dead["job"]
    cause, fix = _SLURM_CAUSES.get(dead["state"], _SLURM_CAUSES["FAILED"])
    return (f"SLURM job {dead['job']} of the sweep ended {dead['state']} without its "
            f"result: {cause}; its log is in {log}. The sweep's other jobs were "
            "cancelled. " + _ended_and_how_to_continue(ended, fix))


# what a SLURM job's final state says of its death, and what to change before running again
_SLURM_CAUSES = {
    "OUT_OF_MEMORY": ("it went over its memory", ", with more memory per job "
                      "(hydra.launcher.mem_gb)"),
    "TIMEOUT": ("it reached its time limit", ", with more time per job "
                "(hydra.launcher.timeout_min)"),
    "NODE_FAIL": ("its node failed", ""),
    "FAILED": ("its process was killed (most often for going over its memory, "
               "hydra.launcher.mem_gb) or its node failed",
               ", with more memory per job if that was the cause"),
}


def _raised_in_hydra_composition(exc: BaseException) -> bool:
    """Whether ``exc`` comes from Hydra's defaults list or config loader (a user's
    override Hydra refuses with a plain ValueError), not from this package's code."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "") if tb is not None else ""
    return module.startswith(("hydra._internal.defaults_list", "hydra._internal.config_loader"))


def _first_line(text: object) -> str:
    lines = str(text).strip().splitlines()
    return lines[0].strip().rstrip(".") if lines else ""


def _without_search_path(text: str) -> List[str]:
    kept = []
    for line in text.strip().splitlines():
        if line.strip().startswith("Config search path"):
            break
        if line.strip():
            kept.append(line.strip())
    return kept


# conf/augment/best_for_<data>.yaml: what experiment=best_cnn picks for each data set
BEST_FOR = "best_for_"


def _missing_option(exc: MissingConfigException) -> str:
    missing = str(exc.missing_cfg_file or "")
    group, _, name = missing.rpartition("/")
    options = sorted(exc.options or [])
    if not group or not options:
        return " ".join(_without_search_path(str(exc)))
    if name.startswith(BEST_FOR):  # chosen by a preset (experiment=best_cnn), not typed
        data = name[len(BEST_FOR):]
        guess = (f" A preset (experiment=best_cnn) chose it: it takes the {group} that "
                 f"measured best on each known data set, and has none for data={data}. "
                 f"Name one, e.g. {group}=none or {group}=light, or add "
                 f"{group}/{name}.yaml.")
    else:
        near = difflib.get_close_matches(name, options, n=1)
        guess = f" Did you mean {group}={near[0]}?" if near else ""
    return (f"{group}={name} is not an option of '{group}'.{guess} The options are: "
            f"{', '.join(options)} (or your own {group}/<name>.yaml in a directory "
            "given with --config-dir).")


def _bad_override(message: str, cause: OmegaConfBaseException) -> str:
    override = re.search(r"override (\S+)", message)
    key = cause.full_key or (override.group(1).split("=", 1)[0] if override else "")
    shown = override.group(1) if override else key
    if isinstance(cause, (ConfigKeyError, AttributeError)):  # ConfigAttributeError too
        return _unknown_key(key, cause)
    reason = _first_line(cause.msg or cause)
    return f"{shown} is refused: {reason}. {HELP}"


def _unknown_key(key: str, cause: OmegaConfBaseException) -> str:
    parent, _, name = key.rpartition(".")
    known = _keys_of(cause)
    near = difflib.get_close_matches(name, known, n=1)
    guess = f" Did you mean {parent + '.' if parent else ''}{near[0]}?" if near else ""
    listing = f" The keys of {parent or 'the config'} are: {', '.join(known)}." if known else ""
    return f"{key} is not a config key.{guess}{listing} {HELP}"


def _keys_of(cause: OmegaConfBaseException) -> List[str]:
    kind = cause.object_type
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return [f.name for f in dataclasses.fields(kind)]
    node = cause.parent_node
    try:
        return [str(k) for k in node.keys()] if node is not None else []
    except Exception:  # noqa: BLE001 - only a hint
        return []


def discard_output_dir() -> bool:
    """Remove the output dir Hydra made for a single run that is refused before it ran
    (an invalid config): its ``.hydra/`` configs, the job's log, then the dir and its
    parents up to the launch dir while they are empty. A dir holding anything else (e.g.
    ``hydra.run.dir=.``) keeps everything. Returns whether the dir was removed."""
    if not HydraConfig.initialized():
        return False
    hc = HydraConfig.get()
    if str(getattr(hc.mode, "name", hc.mode)) != "RUN" or not hc.runtime.output_dir:
        return False
    out, launch = Path(hc.runtime.output_dir), Path(hc.runtime.cwd)
    log = f"{hc.job.name}.log"
    if out == launch or not out.is_dir():
        return False
    if not {entry.name for entry in out.iterdir()} <= {".hydra", log}:
        return False
    shutil.rmtree(out / ".hydra", ignore_errors=True)
    (out / log).unlink(missing_ok=True)
    for directory in [out, *out.parents]:
        if directory != out and launch not in directory.parents:
            break
        try:
            directory.rmdir()  # only when empty
        except OSError:
            break
    return not out.exists()
