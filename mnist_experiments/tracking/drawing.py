"""Draw a run's figures to PNG files, on two cores when the machine has them free.

Drawing is Matplotlib's Python code, so one process draws one figure at a time; a
run's dozen figures took 4-6 s of one core here while the other core, done with
training, sat idle. :func:`draw_files` gives half of the figures to a forked child
process (the fork shares the parent's arrays; it only draws and writes files, never
touching TensorFlow or MLflow) and draws the other half itself.

The child is an optimisation, never a dependency: if it cannot start, fails, or takes
much longer than the parent's own share (:data:`CHILD_TIMEOUT`), the parent draws the child's figures itself, so a
run logs every figure whatever happens to the child. The child ends with ``os._exit``
(multiprocessing's fork start method), running no ``atexit`` handler of the parent's,
and dies with the defaults on SIGINT and SIGTERM: a Ctrl-C stops it with its parent,
which then ends its run as usual.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

import matplotlib

from mnist_experiments import figures

# (artifact path, e.g. "plots/curves.png"; timer name; a builder returning a Figure)
Task = Tuple[str, str, Callable[[], Any]]

# after its own share, the parent waits for the child at most this long, or twice the
# time its own share took if that is longer (the shares are about equal)
CHILD_TIMEOUT = 10.0
_CHILD_SECONDS = ".child-seconds.json"


def draw_files(tasks: Sequence[Task], out: Path, dpi: int, workers: int = 1) -> Dict[str, float]:
    """Draw every task's figure to ``out/<artifact path>``; return seconds per step.

    The seconds are keyed as ``artifacts.log_run_artifacts`` always keyed them: the
    builder's timer name for building, ``save:<artifact path>`` for rendering and
    writing. With ``workers`` >= 2 and at least two tasks, a forked child draws every
    other task (their seconds are the child's, measured in parallel with the parent's).
    """
    out = Path(out)
    tasks = list(tasks)
    if (workers < 2 or len(tasks) < 2 or "fork" not in multiprocessing.get_all_start_methods()
            or "ray" in sys.modules):  # a Ray worker's gRPC threads do not survive a fork
        return _draw(tasks, out, dpi)
    mine, theirs = tasks[0::2], tasks[1::2]
    report = out / _CHILD_SECONDS
    try:
        child = multiprocessing.get_context("fork").Process(
            target=_child, args=(theirs, out, dpi, report), name="mnist-exp-figures",
            daemon=True)
        child.start()
    except OSError:  # no memory for a fork, a process limit: all of them here
        return _draw(tasks, out, dpi)
    try:
        start = time.perf_counter()
        seconds = _draw(mine, out, dpi)
        child.join(max(CHILD_TIMEOUT, 2 * (time.perf_counter() - start)))
    finally:
        if child.is_alive():  # stuck, or the parent is unwinding (Ctrl-C)
            child.kill()
            child.join()
    try:
        seconds.update(json.loads(report.read_text()))
        report.unlink()
        done = child.exitcode == 0
    except (OSError, ValueError):
        done = False
    if not done:  # the child failed: its share drawn here, over anything it left
        seconds.update(_draw(theirs, out, dpi))
    return seconds


def _child(tasks: List[Task], out: Path, dpi: int, report: Path) -> None:
    """The forked child: draw ``tasks``, then write their seconds (its success mark)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    seconds = _draw(tasks, out, dpi)
    temporary = report.with_name(report.name + ".tmp")
    temporary.write_text(json.dumps(seconds))
    os.replace(temporary, report)


def _draw(tasks: Sequence[Task], out: Path, dpi: int) -> Dict[str, float]:
    seconds: Dict[str, float] = {}
    for path, name, build in tasks:
        start = time.perf_counter()
        fig = build()
        built = time.perf_counter()
        seconds[name] = round(built - start, 4)
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if dpi:
            fig.set_dpi(int(dpi))
        partial = target.with_name(f".{target.name}.partial")
        with matplotlib.rc_context(figures.SAVE_RC):
            fig.savefig(partial, format="png", **figures.SAVEFIG_KWARGS)
        os.replace(partial, target)  # a file is there whole or not at all
        seconds[f"save:{path}"] = round(time.perf_counter() - built, 4)
    return seconds
