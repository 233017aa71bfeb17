"""Start a joblib sweep's worker processes early, while the sweep opens its MLflow store.

A joblib (loky) worker spends seconds importing TensorFlow, Keras and MLflow before its
first job can start; the sweep's launching process spends seconds creating the store and
the parent run before the launcher starts the workers. Started by the sweep callback
before that work and joined after it, the workers import while the store is made.
They are the very workers Hydra's joblib launcher then uses: loky's executor is reused
when ``joblib.Parallel`` is called with the same settings, which are read here from the
launcher's config (the way the launcher reads them). ``bench/sweeps.py parallel``
measures what it buys.

Light: joblib is imported only for a joblib sweep.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Dict, Optional

log = logging.getLogger(__name__)
SWITCH = "MNIST_EXP_EARLY_WORKERS"  # "0": start them when the launcher does (benchmarks)


def _import_heavy() -> None:
    """In a worker: import what a job needs before its first op."""
    import mnist_experiments.workflows.experiment  # noqa: F401 - TensorFlow, Keras, MLflow


def joblib_settings(launcher: Any) -> Optional[Dict[str, Any]]:
    """``joblib.Parallel``'s arguments as Hydra's joblib launcher builds them, or None
    for another launcher (or one job at a time: joblib then runs jobs in this process)."""
    if not str(launcher.get("_target_", "")).endswith("JoblibLauncher"):
        return None
    settings = {k: v for k, v in dict(launcher).items() if k != "_target_"}
    settings["backend"] = "loky"
    for key in ("pre_dispatch", "batch_size", "max_nbytes"):  # as the launcher does
        try:
            if settings.get(key):
                settings[key] = int(settings[key])
        except (TypeError, ValueError):
            pass
    return settings if settings.get("n_jobs") not in (1, None) else None


class Warmup:
    """Workers importing in the background; :meth:`join` waits for them."""

    def __init__(self, settings: Dict[str, Any]):
        self.settings = settings
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, name="joblib-warmup", daemon=True)

    @classmethod
    def start(cls, launcher: Any) -> Optional["Warmup"]:
        settings = joblib_settings(launcher)
        if settings is None or os.environ.get(SWITCH) == "0":
            return None
        warmup = cls(settings)
        warmup.thread.start()
        return warmup

    def _run(self) -> None:
        try:
            from joblib import Parallel, cpu_count, delayed

            n = self.settings["n_jobs"]
            workers = n if n > 0 else max(1, cpu_count() + 1 + n)
            Parallel(**self.settings)(delayed(_import_heavy)() for _ in range(workers))
        except BaseException as exc:  # noqa: BLE001 - the launcher will start them anyway
            self.error = exc

    def join(self, timeout: float = 120.0) -> None:
        self.thread.join(timeout)
        if self.error is not None:
            log.debug("joblib workers were not started early: %s", self.error)
