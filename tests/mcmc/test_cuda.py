"""The MCMC runner on a CUDA device (skipped without one): the exactness tests of
test_kernels.py and test_nuts.py with ``device="cuda"``, and compiled blocks against eager
ones there (Triton kernels instead of ATen's: the same chains to rounding).

Random numbers come from a CPU generator (drawn there and moved: the same numbers as a CPU
run) or from a CUDA generator (drawn on the device); both are exercised.
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from scorelab import densities, mcmc
from tests.mcmc.test_kernels import TARGETS, assert_moments, run_and_check_moments
from tests.mcmc.test_nuts import run_nuts_and_check_moments

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
F64 = torch.float64


def _cuda_gen(seed: int) -> torch.Generator:
    return torch.Generator("cuda").manual_seed(seed)


@pytest.mark.parametrize("kernel", ["rwm", "mala", "hmc"])
@pytest.mark.parametrize("name", TARGETS)
def test_kernels_recover_moments_on_cuda(kernel, name):
    res = run_and_check_moments(kernel, name, device="cuda", compile=False, progress=False)
    assert res.samples.device.type == "cuda" and not res.compiled


def test_nuts_recovers_moments_on_cuda():
    res = run_nuts_and_check_moments(device="cuda", compile=False, progress=False)
    assert res.samples.device.type == "cuda"


@pytest.mark.parametrize("kernel", ["mala", "hmc"])
def test_compiled_blocks_on_cuda_give_the_eager_chains(kernel):
    """One graph (no breaks, no recompiles), then the eager chains: every accept/reject
    decision the same and the draws equal to float64 rounding (Triton's fused arithmetic may
    round differently from ATen's kernels)."""
    target = TARGETS["ill-conditioned-gaussian"]
    kw = dict(chains=16, steps=300, warmup=200, dtype=F64, device="cuda", progress=False)
    if kernel == "hmc":
        kw["n_leapfrog"] = 5
    before = counters["stats"]["unique_graphs"]
    fast = mcmc.sample(target, kernel, compile=True, generator=_cuda_gen(4), **kw)
    assert fast.compiled and counters["stats"]["unique_graphs"] - before == 1
    slow = mcmc.sample(target, kernel, compile=False, generator=_cuda_gen(4), **kw)
    assert fast.samples.device.type == "cuda"
    assert torch.equal(fast.accept_rate, slow.accept_rate)
    torch.testing.assert_close(fast.samples, slow.samples, rtol=0, atol=1e-9)
    assert_moments(fast.samples.cpu(), target.mean.to(F64), target.cov.diagonal().to(F64), 100)


def test_a_cpu_generator_gives_cuda_chains_the_cpu_chains_numbers():
    """With a CPU generator the numbers are drawn on the CPU and moved: the CUDA run sees the
    CPU run's numbers, so at a fixed step size (no adaptation) the chains agree to rounding."""
    kw = dict(chains=8, steps=200, warmup=0, step_size=0.3, dtype=F64, progress=False)
    gen = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    cuda = mcmc.sample(densities.Banana(), "mala", device="cuda", generator=gen(), **kw)
    cpu = mcmc.sample(densities.Banana(), "mala", generator=gen(), **kw)
    assert torch.equal(cuda.accept_rate.cpu(), cpu.accept_rate)
    torch.testing.assert_close(cuda.samples.cpu(), cpu.samples, rtol=0, atol=1e-9)
