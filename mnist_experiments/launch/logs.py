"""Log lines of sweeps: each job's job number, and Optuna's lines without colour codes.

Both are wired in ``conf/config.yaml``: :class:`JobNumber` is a filter of Hydra's
``job_logging`` handlers, and :class:`PlainOptunaLogs` a Hydra callback.

Light: Hydra only (Optuna is imported only in a sweep that uses it).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback


class JobNumber(logging.Filter):
    """Gives each record a ``job`` field: ``[job 3]`` in a job of a multirun, else empty.

    Hydra configures the job logging of every job (in each joblib worker too) after it
    set that job's config, so the number is read once, when the filter is made. The
    ``job_logging`` format shows it: ``[%(asctime)s]%(job)s[%(name)s]...``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.job = ""
        if HydraConfig.initialized():
            hc = HydraConfig.get()
            if str(getattr(hc.mode, "name", hc.mode)) == "MULTIRUN":
                self.job = f"[job {hc.job.num}]"

    def filter(self, record: logging.LogRecord) -> bool:
        record.job = self.job
        return True


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class PlainOptunaLogs(Callback):
    """Optuna writes its lines (warnings, "A new study created ...") with colorlog's
    colour codes whatever its stream is. Unless stderr is a terminal, its own handler is
    switched off and its lines go through Hydra's logging instead, plain, like every
    other line (and into the log files Hydra writes)."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        target = str(config.hydra.sweeper.get("_target_", ""))
        if "optuna" not in target.lower() or _is_terminal(sys.stderr):
            return
        import optuna  # the sweeper imports it anyway

        optuna.logging.disable_default_handler()
        optuna.logging.enable_propagation()
