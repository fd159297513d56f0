"""``diffusion.sample`` with no arguments beyond ``nfe``: the measured defaults (UniPC on
``default_schedule``, the data-aware prior when the moments are known)."""

from __future__ import annotations

import math

import torch

from scorelab import diffusion
from scorelab.densities import GaussianMixture
from scorelab.metrics import sliced_wasserstein

F64 = torch.float64
GM = GaussianMixture([0.3, 0.7], [[-2.0, -1.0], [1.5, 1.0]], 0.3)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_the_defaults_are_unipc_on_the_default_levels_from_the_data_prior():
    res = diffusion.sample(GM, 16, progress=False)
    var = float(torch.trace(GM.cov)) / 2
    assert res.sampler == diffusion.DEFAULT_SAMPLER == "unipc"
    assert res.nfe == diffusion.DEFAULT_NFE == 20
    want = diffusion.default_schedule(20, sigma_max=80.0, dim=2, variance=var)
    torch.testing.assert_close(res.sigmas, want.float(), rtol=0, atol=0)
    # the same numbers as asking for all of it by name
    a = diffusion.sample(GM, 16, nfe=7, generator=_gen(1), progress=False).samples
    b = diffusion.sample(GM, 16, sampler="unipc", nfe=7, generator=_gen(1), prior="data",
                         sigmas=diffusion.default_schedule(7, dim=2, variance=var),
                         progress=False).samples  # fmt: skip
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_without_moments_the_prior_is_zero_mean_and_the_data_unit_scale():
    seen = []

    def model(x, sigma):
        seen.append(x.clone())
        return GM.denoise(x, sigma)

    res = diffusion.sample(model, 4000, nfe=5, shape=(2,), generator=_gen(2), dtype=F64,
                           progress=False)  # fmt: skip
    torch.testing.assert_close(res.sigmas, diffusion.default_schedule(5, dim=2))
    # N(0, 80^2 I): the sample mean is within 5 standard errors (80 / sqrt(4000)) of 0
    assert seen[0].mean(0).abs().max() < 5 * 80 / math.sqrt(4000)


def test_a_models_own_sigma_max_tops_the_default_levels():
    class Model:
        sigma_max = 157.0

        def __call__(self, x, sigma):
            return GM.denoise(x, sigma)

    res = diffusion.sample(Model(), 4, nfe=6, shape=(2,), progress=False)
    assert float(res.sigmas[0]) == 157.0


def test_defaults_at_nfe_10_sample_the_mixture_like_exact_sampling():
    """At NFE 10 the defaults are within exact sampling's own spread: SW-1 to an exact
    reference set below the mean + 5 sd of SW-1 between 10 pairs of exact sets (n = 4000),
    where the old default (heun on the EDM levels) at NFE 10 is far outside it."""
    n = 4000

    def sw(x, y):
        return sliced_wasserstein(x, y, p=1, generator=_gen(123)).item()

    ref = GM.sample(n, generator=_gen(0), dtype=F64)
    d0 = torch.tensor([sw(ref, GM.sample(n, generator=_gen(s), dtype=F64)) for s in range(1, 11)])
    bound = (d0.mean() + 5 * d0.std()).item()
    ours = diffusion.sample(GM, n, nfe=10, generator=_gen(7), dtype=F64, progress=False).samples
    old = diffusion.sample(GM, n, sampler="heun", nfe=10, process="edm", generator=_gen(7),
                           dtype=F64, progress=False).samples  # fmt: skip
    assert sw(ours, ref) < bound < sw(old, ref), (sw(ours, ref), bound, sw(old, ref))


def test_defaults_at_nfe_5_keep_the_mode_weights_of_a_far_apart_mixture():
    """The 0.2/0.8 toy of issue #17 (modes 14 apart) at NFE 5: the weight the defaults give the
    small mode is within 3 binomial standard errors (sqrt(0.2 * 0.8 / n) = 0.004 at n = 10,000)
    of 0.2. The 5-step levels before the small-budget rule (h = 3 RMS distances, last level
    0.4 / steps standard deviations: first step from 80 straight to 8.6) miss by 0.026."""
    gm = GaussianMixture([0.2, 0.8], [[-5.0, -5.0], [5.0, 5.0]], 1.0)
    n, tol = 10_000, 3 * math.sqrt(0.2 * 0.8 / 10_000)

    def small_weight(x):
        return float((x[:, 0] + x[:, 1] < 0).double().mean())  # the modes' bisector

    var = float(torch.trace(gm.cov)) / 2
    h, lo = 3 * math.sqrt(2 * 2 * var), 0.4 / 5 * math.sqrt(var)
    u = torch.linspace(-0.5 * math.log(80.0**-2 + h**-2), -0.5 * math.log(lo**-2 + h**-2), 5,
                       dtype=F64)  # fmt: skip
    old = (torch.exp(-2 * u) - h**-2).rsqrt()
    old[0], old[-1] = 80.0, lo
    old = torch.cat([old, old.new_zeros(1)])
    ours = diffusion.sample(gm, n, nfe=5, generator=_gen(3), dtype=F64, progress=False)
    before = diffusion.sample(gm, n, nfe=5, sigmas=old, prior="data", generator=_gen(3),
                              dtype=F64, progress=False)  # fmt: skip
    assert abs(small_weight(ours.samples) - 0.2) < tol < abs(small_weight(before.samples) - 0.2)
