"""Ctrl-C and SIGTERM: one way to stop, whatever the moment.

:func:`handled` (used by every command's ``main``, and by the Hydra app in each job
process) turns SIGINT and SIGTERM into :class:`Interrupted`, a ``KeyboardInterrupt``
that remembers its signal, so that the code that is running unwinds: a run ends
KILLED (:func:`mnist_experiments.tracking.runs.tracked_run`), a sweep stops its
workers and ends its parent run. The command then prints one line and exits with the
conventional status, 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM).

:func:`deferred` holds a signal back while a run's final status is written; it is
raised right after. Once stopping, a second signal is ignored, so that it cannot break
the clean-up that ends the runs; a third one ends the process at once (its runs are
then ended by the next command, see :mod:`mnist_experiments.tracking.liveness`).

A signal that lands while Python runs a ``__del__`` or a weakref callback (a garbage
collection, say) raises where Python can only print the exception ("Exception ignored
in ...", a traceback) and go on as if nothing happened; :func:`_redeliver` catches it
there, silently, and sends the signal again, so that it stops the process at the next
point where it can.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Iterator, List, Optional

from mnist_experiments.tracking.owner import process_start, stat_fields

SIGNALS = (signal.SIGINT, signal.SIGTERM)
REDELIVER_SECONDS = 0.01  # a signal dropped in a __del__ comes back this much later


class Interrupted(KeyboardInterrupt):
    """A SIGINT or SIGTERM received by this process."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


class JobStopped(Exception):
    """A sweep job stopped by a signal in a process that no launcher of ours waits on
    (a SLURM job after ``scancel`` or its time limit, a Ray worker): its runs have
    ended KILLED. An ``Exception``, unlike :class:`Interrupted`, so that Hydra returns
    the job as failed and the launcher (Submitit, Ray) gets a result for it and goes on
    waiting for the other jobs, instead of the whole sweep failing at once."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(int(signum))
        self.signum = int(signum)

    def __str__(self) -> str:
        return f"stopped by {signal.Signals(self.signum).name}; its run ended KILLED"


_state = threading.local()
received: List[int] = []  # every signal this process received, in order


def _depth() -> int:
    return getattr(_state, "depth", 0)


# Set by a sweep or a reproduction in its launching process: a signal is first passed
# on to the worker processes, which end their runs KILLED, and only then raised here.
forward_to_children = False

# A worker that has ended its runs after a passed-on signal says so with a file named
# by its pid in this directory (the launcher's ``<pid>:<dir>``, inherited by workers),
# then waits to be stopped: if it let its error reach the launcher at once, a launcher
# like joblib would SIGKILL the other workers while they still end their runs.
STOPPING_ENV = "MNIST_EXP_STOPPING_DIR"
PARK_SECONDS = 60.0


FORCE_AFTER = 3  # the third signal stops the process at once (its runs: see liveness)


@contextlib.contextmanager
def passed_to_children() -> Iterator[None]:
    """Inside the block, a signal first stops this process's worker processes (see
    :func:`stop_children`), so that their runs end KILLED before the block unwinds."""
    global forward_to_children
    before, forward_to_children = forward_to_children, True
    saved, directory = os.environ.get(STOPPING_ENV), tempfile.mkdtemp(prefix="mnist-exp-stop-")
    os.environ[STOPPING_ENV] = f"{os.getpid()}:{directory}"  # workers started from now on
    try:
        yield
    finally:
        forward_to_children = before
        if saved is None:
            os.environ.pop(STOPPING_ENV, None)
        else:
            os.environ[STOPPING_ENV] = saved
        shutil.rmtree(directory, ignore_errors=True)


def _stopping_dir(launcher_only: bool) -> Optional[Path]:
    """The directory of :data:`STOPPING_ENV`: for the launcher that made it, or (with
    ``launcher_only`` false) for one of its workers."""
    owner, _, directory = os.environ.get(STOPPING_ENV, "").partition(":")
    if not directory or (owner == str(os.getpid())) != launcher_only:
        return None
    return Path(directory)


def _launcher_pid() -> Optional[int]:
    owner = os.environ.get(STOPPING_ENV, "").partition(":")[0]
    return int(owner) if owner.isdigit() else None


def detached_worker() -> bool:
    """Whether this process runs a sweep's jobs for a launcher that is not its parent:
    a SLURM job (its parent is slurmstepd, the launcher waits on files) or a Ray worker
    (its parent is the raylet). Such a process reports a signal as :class:`JobStopped`;
    a launcher's own worker (joblib's) parks instead, see :func:`_park`."""
    owner = _launcher_pid()
    return owner is not None and owner not in (os.getpid(), os.getppid())


def _park() -> None:
    """In a worker whose runs ended after a passed-on signal: say so, then wait (bounded)
    for the launcher to stop this process. Only a child of the launcher parks: a
    detached worker (:func:`detached_worker`) was not stopped by the launcher, which
    would never stop it either."""
    import time

    directory = _stopping_dir(launcher_only=False)
    if directory is None or not directory.is_dir() or _launcher_pid() != os.getppid():
        return
    with contextlib.suppress(OSError):
        (directory / str(os.getpid())).touch()
        deadline = time.monotonic() + PARK_SECONDS
        while time.monotonic() < deadline and directory.is_dir():
            time.sleep(0.1)


def _handler(signum, frame) -> None:
    received.append(signum)
    if len(received) >= FORCE_AFTER:
        os._exit(128 + signum)
    if len(received) > 1:
        # already stopping: a second Ctrl-C (or the sweep's SIGTERM after the terminal's
        # SIGINT) must not interrupt the clean-up that ends the runs
        return
    if _depth() > 0:
        _state.pending = signum
        return
    if forward_to_children:
        stop_children(signal.SIGTERM)  # loky workers ignore SIGINT
    raise Interrupted(signum)


def interrupting(exc: BaseException) -> Optional[int]:
    """The signal behind ``exc``, or None: a KeyboardInterrupt's, or the first SIGINT or
    SIGTERM this process received, whatever error surfaced after it.

    The signal raises :class:`Interrupted` wherever the main thread is; a library that
    is interrupted half-way may leave its state broken and fail with an error of its
    own, which replaces the interruption. Seen: Ctrl-C while Hydra composed the next job
    of a sequential sweep came out as "Key 'defaults' is not in struct", exit 1.
    """
    if isinstance(exc, KeyboardInterrupt):
        return signal_of(exc)
    return received[0] if received else None


def raise_if_received() -> None:
    """Raise the first signal this process received, if any: nothing new (a sweep's next
    job, a fit's next epoch) starts after one, even if the code it first interrupted
    caught it and carried on."""
    if received:
        raise Interrupted(received[0])


def raise_interruption(exc: BaseException) -> None:
    """Raise the interruption behind ``exc`` (see :func:`interrupting`), if there is one,
    so that it is reported as the signal it is (one line, exit 128 + signal)."""
    signum = interrupting(exc)
    if signum is not None and not isinstance(exc, KeyboardInterrupt):
        raise Interrupted(signum) from exc


def signal_of(exc: BaseException) -> int:
    """The signal behind an interruption (a plain KeyboardInterrupt is SIGINT)."""
    return getattr(exc, "signum", signal.SIGINT)


def exit_status(exc: BaseException) -> int:
    return 128 + signal_of(exc)


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Raise :class:`Interrupted` on SIGINT and SIGTERM inside the block (main thread
    only; elsewhere a no-op); the previous handlers come back after it, so a
    launcher's worker process that ran a job is not left with them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        if previous[s] == signal.SIG_IGN and s == signal.SIGINT:
            continue  # started in the background (`cmd &`): Ctrl-C was never ours
        signal.signal(s, _handler)
    hook = sys.unraisablehook
    sys.unraisablehook = _redeliver(hook)
    try:
        yield
    except KeyboardInterrupt:
        _park()  # a worker: its runs have ended; the launcher stops it
        raise
    finally:
        sys.unraisablehook = hook
        for s, handler in previous.items():
            signal.signal(s, handler)


def _redeliver(previous):
    """An unraisable-exception hook: an :class:`Interrupted` raised inside a ``__del__``
    or a weakref callback, where Python would print it and drop it, is sent again as
    the signal it was (counted once), from another thread a moment later, once the
    main thread is out of the hook; anything else goes to ``previous``."""
    def hook(unraisable) -> None:
        exc = unraisable.exc_value
        if isinstance(exc, Interrupted) and received and received[-1] == exc.signum:
            again = threading.Timer(REDELIVER_SECONDS, os.kill, (os.getpid(), exc.signum))
            again.daemon = True
            try:
                again.start()
            except RuntimeError:  # no new thread at interpreter shutdown: say it, as before
                previous(unraisable)
                return
            received.pop()  # the handler counts it again when it comes back
            return
        previous(unraisable)

    return hook


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back inside the block; raise it when the block ends."""
    _state.depth = _depth() + 1
    try:
        yield
    finally:
        _state.depth -= 1
        pending = getattr(_state, "pending", None)
        if _state.depth == 0 and pending is not None:
            _state.pending = None
            raise Interrupted(pending)


# helpers that ignore SIGTERM and end by themselves when their parent exits
_NOT_WORKERS = ("resource_tracker",)


def stop_children(signum: int = signal.SIGTERM, timeout: float = 30.0) -> int:
    """Pass ``signum`` on to this process's child processes (a launcher's workers),
    wait until each has ended its runs (it exited, or it reported so and waits, see
    :func:`passed_to_children`), then SIGKILL the rest; return how many there were.

    Children in a session of their own (the store helper) are left to their owner.
    """
    import time

    children = _children()
    for pid in children:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)
    directory = _stopping_dir(launcher_only=True)

    def busy(pid: int) -> bool:  # alive, and not yet done with its runs
        return _alive(pid) and not (directory is not None and (directory / str(pid)).exists())

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(busy(pid) for pid in children):
        time.sleep(0.1)
    for pid in children:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    for pid in children:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
    return len(children)


def _children() -> List[int]:
    """Live child processes of this one in its own session (Linux /proc)."""
    me, session = os.getpid(), os.getsid(0)
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        fields = stat_fields(int(entry.name))
        if fields is None or int(fields[1]) != me or fields[0] == "Z" or int(fields[3]) != session:
            continue
        try:
            command = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if not any(name in command for name in _NOT_WORKERS):
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    return process_start(pid) is not None


def name_of(exc: BaseException) -> str:
    return signal.Signals(signal_of(exc)).name


def stoppable(prog: str):
    """Decorate a command's ``main``: SIGINT/SIGTERM inside it print one line and return
    the conventional exit status, instead of a traceback (or SIGTERM's silent death)."""
    import functools
    import sys

    def decorate(main):
        @functools.wraps(main)
        def wrapper(*args, **kwargs):
            with handled():
                try:
                    return main(*args, **kwargs)
                except KeyboardInterrupt as exc:
                    print(f"{prog}: stopped by {name_of(exc)}.", file=sys.stderr, flush=True)
                    return exit_status(exc)
        return wrapper
    return decorate
