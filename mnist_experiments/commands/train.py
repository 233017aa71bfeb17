"""The ``mnist-exp`` command: a Hydra app around
:func:`mnist_experiments.workflows.experiment.run_experiment`.

Importing this module is cheap: TensorFlow and MLflow are imported only when a job
runs, so ``mnist-exp --help`` and ``mnist-exp --cfg job`` stay fast.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Optional

import hydra
from omegaconf import DictConfig

from mnist_experiments.compat import share_config_repository_for_help
from mnist_experiments.config.schema import register_configs
from mnist_experiments.config.validation import validate
from mnist_experiments.launch import numerics
from mnist_experiments.launch.context import JobContext

CONFIG_PATH = "pkg://mnist_experiments.conf"

register_configs()


if any(arg in ("--help", "-h") for arg in sys.argv[1:]):
    share_config_repository_for_help()


def _sigterm_as_interrupt(signum, frame):  # pragma: no cover - exercised by a subprocess test
    raise KeyboardInterrupt(f"signal {signum}")


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")
def app(cfg: DictConfig) -> Optional[float]:
    """Train and evaluate the configured model; return the objective for sweepers."""
    try:
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    except ValueError:  # not in the main thread (e.g. a launcher's worker thread)
        pass
    # TensorFlow's C++ start-up chatter hides the run's own log lines.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    context = JobContext.from_hydra()
    validate(cfg)  # a bad value is refused before anything heavy is imported
    numerics.prepare(cfg)  # oneDNN and its ISA: read by TensorFlow when it loads
    # a brand-new SQLite store is built by a helper process while TensorFlow imports
    with context.start_store_creation(cfg) as creation:
        from mnist_experiments.workflows.experiment import run_experiment  # heavy

        return run_experiment(cfg, context, creation).objective


def main() -> None:
    """``mnist-exp``: run the Hydra app.

    After a successful single run, everything is logged and flushed, so the process
    exits at once instead of spending ~2 s in TensorFlow's interpreter teardown.
    Errors and multiruns (whose launchers may own worker processes) exit normally.
    """
    app()
    if "tensorflow" in sys.modules and not {"-m", "--multirun"} & set(sys.argv[1:]):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
