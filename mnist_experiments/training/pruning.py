"""Stop a sweep job's training when its Optuna trial is pruned (a Keras callback).

After every epoch the job's validation accuracy goes to its trial
(:class:`~mnist_experiments.launch.study.JobTrial`) at step = epoch (1-based); when the
study's pruner (``hydra.sweeper.pruner``) says the trial is worse than its peers at that
epoch, training stops there. The run keeps the epochs it ran and is tagged ``pruned``.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import keras

log = logging.getLogger(__name__)


class OptunaPruning(keras.callbacks.Callback):
    def __init__(self, trial: Any, monitor: str = "val_accuracy"):
        super().__init__()
        self.trial, self.monitor = trial, monitor

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is not None and self.trial.report(float(value), epoch + 1):
            log.info("trial %d pruned after epoch %d (%s %.4f): the study's pruner stops it",
                     self.trial.number, epoch + 1, self.monitor, float(value))
            self.model.stop_training = True
