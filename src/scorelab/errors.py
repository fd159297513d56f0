"""Errors raised across scorelab."""


class DivergenceError(RuntimeError):
    """A chain or sampler produced NaN/inf; the message names the step size or sigma and the fix."""


class Interrupted(KeyboardInterrupt):
    """Training stopped by a signal (SIGINT, SIGTERM, SIGUSR1) after saving a checkpoint; a
    command exits with ``128 + signum``. A ``KeyboardInterrupt``, so Ctrl-C handlers see it."""

    def __init__(self, signum: int, step: int, checkpoint: str) -> None:
        super().__init__(f"stopped by signal {signum} at step {step}; checkpoint {checkpoint}")
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
