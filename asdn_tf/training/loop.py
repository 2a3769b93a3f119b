"""The training loop of both backends, written once: resume, the updates with logging and
progress, validation and keeping the best weights, the checkpoint policy, the final weights.

A backend supplies two small objects. Its `Checkpoints` (`tf_checkpoints`, `jax_checkpoints`:
the on-disk format is the only part that differs) restore the newest checkpoint that can be
restored, `save(state, elapsed)` one and the run state after it, and say in a few words what a
stopped run resumes from (`newest()`). Its step adapter (`train_tf`, `train_jax`) has:

    step()                  the number of updates made
    update()                one update; its loss as a float
    sync()                  the network's Keras variables hold the latest update's weights
    validate(scales)        {scale: mean Y-PSNR} over the validation images
    summarize(step, values, samples=False)  TensorBoard scalars (and sample images), or nothing
"""

import dataclasses
import math
import sys
import time

from absl import logging

from asdn_tf.nn import config as config_lib
from asdn_tf.training import common, run_folder
from asdn_tf.training.errors import TrainingError
from asdn_tf.training.config import learning_rate_schedule


def resume(output_dir, restart, checkpoints, warm_start):
    """The run state to go on from in `output_dir`: `restart` first moves an earlier run's
    files aside; without a checkpoint to restore, `warm_start()` runs. Returns the RunState.

    Raises:
        TrainingError: no checkpoint restores and, without `restart`, the folder holds an
            earlier run's files that starting from step 0 would replace (`check_no_earlier_run`).
    """
    if restart:
        run_folder.set_aside_run(output_dir)
    elif not run_folder.has_checkpoint(output_dir):
        run_folder.check_no_earlier_run(output_dir)  # before anything in the folder changes
    if checkpoints.restore() is None:
        if not restart:  # checkpoint files there may have been, all a killed write's
            run_folder.check_no_earlier_run(output_dir)
        warm_start()
    state = run_folder.load_state(output_dir)
    # Read now so that a bad curve is set aside at the start, with its warning.
    run_folder.read_validation_curve(output_dir / run_folder.VALIDATION_CURVE)
    return state


class Loop:
    """The updates of one run until `sidecar.train_config.steps`, and what they write in
    `output_dir` (`run_folder`'s layout). Only the chief (`chief`) writes; `images` is its
    validation set ([] when the run does not validate). `sidecar` is the `WeightsSidecar`
    the weights get, its steps, time and PSNR filled in as they are written."""

    def __init__(self, adapter, checkpoints, network, output_dir, sidecar, images, chief=True,
                 state=None):
        self.adapter, self.checkpoints, self.network = adapter, checkpoints, network
        self.output_dir, self.sidecar, self.images, self.chief = (output_dir, sidecar, images,
                                                                  chief)
        self.config = sidecar.train_config
        self.state = state or run_folder.RunState()
        # FSDN is measured at its own scales only.
        self.scales = (self.config.validation_scales if sidecar.model == "asdn"
                       else tuple(float(factor) for factor in
                                  config_lib.fsdn_scales(sidecar.scale)))
        self.schedule = learning_rate_schedule(self.config)
        self.clock = time.time()

    def run(self):
        """Updates until the configured steps, logging, validating and saving on the way."""
        total = self.config.steps
        first_step, started = self.adapter.step(), time.time()
        while self.adapter.step() < total:
            loss = self.adapter.update()
            step = self.adapter.step()
            if not math.isfinite(loss):
                raise TrainingError(f"loss became {loss} at step {step}; stopped without "
                                    f"saving; {self.checkpoints.newest()}")
            if step % self.config.log_every == 0 or step == total:
                self._log(step, loss, (step - first_step) / max(time.time() - started, 1e-9))
            validating = self.images and (step % self.config.validate_every == 0
                                          or step == total)
            saving = step % self.config.checkpoint_every == 0 or step == total
            if validating or saving:
                self.adapter.sync()
            # Only the chief validates, with no collective op: the others wait in the next update.
            if validating:
                self.validate(step)
            if saving:
                self.checkpoints.save(self.state, self._elapsed)
        sys.stderr.write("\n")

    def _elapsed(self):
        """Seconds since the last call, or since the start."""
        now = time.time()
        seconds, self.clock = now - self.clock, now
        return seconds

    def _log(self, step, loss, rate):
        learning_rate = float(self.schedule(step))
        self.adapter.summarize(step, {"loss": loss, "learning_rate": learning_rate})
        common.progress_line(step, self.config.steps, loss, learning_rate, rate)

    def validate(self, step):
        """Validates, logs and records the PSNR; keeps the weights when they are the best."""
        psnr = self.adapter.validate(self.scales)
        self.adapter.summarize(step, {f"validation/psnr_x{scale:g}": value
                                      for scale, value in psnr.items()}, samples=True)
        logging.info("step %d validation PSNR %s", step, ", ".join(
            f"x{scale:g} {value:.2f}" for scale, value in psnr.items()))
        self.state.latest_validation = {f"{scale:g}": value for scale, value in psnr.items()}
        run_folder.record_validation(self.output_dir / run_folder.VALIDATION_CURVE, step, psnr)
        if run_folder.mean_psnr(psnr) > self.state.best_psnr:
            self.state.best_psnr = run_folder.mean_psnr(psnr)
            self.save_weights(run_folder.BEST_WEIGHTS)

    def save_weights(self, name):
        """`name` (best or final weights) with its sidecar; returns its path."""
        path = self.output_dir / name
        run_folder.save_weights(self.network, path, dataclasses.replace(
            self.sidecar, steps=self.adapter.step(), training_seconds=round(self.state.seconds, 1),
            validation_psnr=self.state.latest_validation))
        return path

    def finish(self, task="this process"):
        """Writes the final weights (the chief); returns their path, or None (the others)."""
        if not self.chief:
            logging.info("done: %s (%d steps); the chief writes the weights", task,
                         self.adapter.step())
            return None
        self.adapter.sync()
        path = self.save_weights(run_folder.FINAL_WEIGHTS)
        logging.info("done: %s (%d steps)", path, self.adapter.step())
        return path
