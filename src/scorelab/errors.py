"""Errors raised across scorelab."""


class DivergenceError(RuntimeError):
    """A chain or sampler produced NaN/inf; the message names the step size or sigma and the fix."""
