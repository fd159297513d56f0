"""``diffusion.sample`` runs on the denoiser's device unless told otherwise (issue 18, item 12)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from scorelab import diffusion
from scorelab.diffusion import ClassifierFreeGuidance, Inpainter, api, model_device


class Stop(Exception):
    """Raised by the probe denoiser once it has seen the first x."""


class Probe(nn.Module):
    """A denoiser whose one parameter says where it lives; records the device of x."""

    event_shape = (3,)

    def __init__(self, device: str) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1, device=device))
        self.seen: list[torch.device] = []

    def forward(self, x, sigma, cond=None):
        self.seen.append(x.device)
        raise Stop


def test_model_device_looks_through_wrappers():
    net = Probe("meta")
    assert model_device(net) == torch.device("meta")
    assert model_device(ClassifierFreeGuidance(net, 2.0)) == torch.device("meta")
    inp = Inpainter(net, torch.zeros(2, 3), torch.ones(2, 3))
    assert model_device(inp) == torch.device("meta")
    assert model_device(lambda x, sigma: x) is None  # a plain function has no device


@pytest.mark.parametrize("device, expected", [(None, "meta"), ("cpu", "cpu")])
def test_x_starts_on_the_denoisers_device_unless_one_is_given(monkeypatch, device, expected):
    """The prior draw x is made on the device sampling runs on (meta: not the CPU, on every
    machine; the draw is stopped there, since meta tensors hold no values to sample with)."""
    drawn = []

    def spy(shape, generator, dtype, device):
        drawn.append(torch.device(device))
        raise Stop

    monkeypatch.setattr(api, "randn", spy)
    with pytest.raises(Stop):
        diffusion.sample(Probe("meta"), 4, nfe=3, device=device,
                         generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert drawn == [torch.device(expected)]


def test_the_likelihood_runs_on_the_models_device():
    """x on the CPU, weights on meta: the ODE hands the network points on meta."""
    net = Probe("meta")
    with pytest.raises(Stop):
        diffusion.log_likelihood(net, torch.zeros(2, 3))
    assert net.seen == [torch.device("meta")]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_denoiser_samples_on_cuda_and_returns_cpu_samples():
    class Shrink(nn.Module):
        event_shape = (2,)

        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(0.5))
            self.devices: set[torch.device] = set()

        def forward(self, x, sigma, cond=None):
            self.devices.add(x.device)
            return self.scale * x / (1 + sigma.reshape(-1, 1) ** 2)

    net = Shrink().cuda()
    res = diffusion.sample(net, 16, nfe=5, generator=torch.Generator().manual_seed(0))
    assert {d.type for d in net.devices} == {"cuda"} and res.samples.device.type == "cpu"
    cpu = diffusion.sample(net.cpu(), 16, nfe=5, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(res.samples, cpu.samples, atol=1e-5)  # same draws, either device
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(1))
    ll = diffusion.log_likelihood(net.cuda(), x)
    assert ll.device.type == "cpu" and torch.allclose(ll, diffusion.log_likelihood(net.cpu(), x),
                                                      atol=1e-3)  # fmt: skip
