"""The clock of one training job: "train for 5 minutes" means the saved model in 5 minutes.

A time budget covers the whole job, from pressing Train (or starting ``imgcls train``) to
the calibrated model on disk: reading the images, building the model, training, the last
validation pass, calibration and the save. Training gets what the other parts leave, and
what they will take after training is planned from rates measured during the same job.

The clock is ``time.monotonic()``: on Linux that is CLOCK_MONOTONIC, one clock for every
process on the machine, so the window can start the job's clock when the user presses
Train and the engine process that trains can finish it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

# Work after the fit whose cost no rate measured during training predicts: tracing
# calibration's tf.function, restoring the best weights, the metadata (1.3 s of it counting
# FLOPs), writing the run record, and the process's exit.
AFTER_FIT_FIXED_SECONDS = 4.0
# An evaluation through the Predictor costs more per view than a validation pass in fit():
# decoding, the detector's score and a result per file. On CIFAR-10's fast_cnn (2-core AVX2
# EPYC): 0.596 ms a view for 10,000 test images against 0.457 ms an image in fit()'s
# validation pass and 0.449 ms a view in calibration.
EVALUATION_VIEW_FACTOR = 1.3
# Writing the .keras file: a zip of float32 weights, about 100 MB/s on a laptop's disk
# (fast_cnn: 0.1 s; EfficientNet-Lite0: 0.4 s on the same EPYC).
SAVE_BYTES_PER_SECOND = 100e6


@dataclass
class JobClock:
    """When the job started and how long it may take.

    Attributes:
        budget: Seconds for the whole job, or None when the job is not timed.
        started_at: ``time.monotonic()`` when the user asked for the job.
    """

    budget: float | None = None
    started_at: float = field(default_factory=time.monotonic)

    @property
    def deadline(self) -> float | None:
        """``time.monotonic()`` by which the model must be saved, or None."""
        return None if self.budget is None else self.started_at + self.budget

    def elapsed(self, now: float | None = None) -> float:
        """Seconds since the job started.

        Args:
            now: ``time.monotonic()`` to measure at (default: now).

        Returns:
            Seconds elapsed.
        """
        return (time.monotonic() if now is None else now) - self.started_at

    def seconds_left(self, now: float | None = None) -> float | None:
        """Seconds until the deadline (never negative), or None when the job is not timed.

        Args:
            now: ``time.monotonic()`` to measure at (default: now).

        Returns:
            Seconds left, or None without a budget.
        """
        if self.budget is None:
            return None
        return max(0.0, self.budget - self.elapsed(now))


def save_seconds(parameters: int) -> float:
    """Seconds writing a model of ``parameters`` float32 weights should take.

    Args:
        parameters: Number of float32 weights in the model.

    Returns:
        Expected seconds for the save.
    """
    return 4.0 * parameters / SAVE_BYTES_PER_SECOND
