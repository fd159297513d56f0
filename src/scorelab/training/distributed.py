"""Data-parallel helpers on ``torch.distributed``: ranks from ``torchrun``'s environment, the
process group, barriers, batch and sample shards, and per-example random draws.

Under ``torchrun`` every process (rank) gets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in its
environment; outside it there is one process, rank 0 of 1, and every helper here is a no-op.

How an N-rank step equals the 1-process step with the same global batch and seed: every rank
holds the same training generator (same seed, same draws), draws the *global* minibatch indices
and takes its contiguous slice, and, inside :class:`PerExampleDraws`, every draw from that
generator whose leading dimension is the local batch is made at the global batch size and
sliced the same way. So rank ``r`` sees exactly rows ``r*b .. (r+1)*b`` of what one process
would see (data, noise levels, noise, dropped labels), the generators stay in lock-step, and
DistributedDataParallel's gradient average over ranks of the per-rank mean loss is the mean
loss over the global batch. Only the order of floating-point sums differs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

__all__ = [
    "ModelView",
    "PerExampleDraws",
    "all_mean",
    "assert_same_across_ranks",
    "barrier",
    "ddp_options",
    "env_world_size",
    "init",
    "is_distributed",
    "is_main",
    "local_device",
    "local_rank",
    "merge_samples",
    "rank",
    "rank_seed",
    "sample_share",
    "shard",
    "share",
    "split_batch",
    "teardown",
    "world_size",
]


# -- where am I --------------------------------------------------------------------------------
def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as err:
        raise ValueError(
            f"environment variable {name}={value!r} is not an integer; launch with torchrun, "
            "which sets RANK, WORLD_SIZE and LOCAL_RANK"
        ) from err


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 outside ``torchrun``)."""
    return max(1, _env_int("WORLD_SIZE", 1))


def is_distributed() -> bool:
    """Whether a process group with more than one rank is initialized."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of ranks: the process group's, else ``WORLD_SIZE``, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return env_world_size()


def rank() -> int:
    """This process's global rank: the process group's, else ``RANK``, else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return _env_int("RANK", 0)


def local_rank() -> int:
    """This process's rank on its node (``LOCAL_RANK``, set by torchrun; 0 otherwise)."""
    return _env_int("LOCAL_RANK", 0)


def is_main() -> bool:
    """True on rank 0, the one process that logs, shows progress and writes files."""
    return rank() == 0


# -- process group -----------------------------------------------------------------------------
def local_device(device: torch.device) -> torch.device:
    """The device of this rank: ``cuda`` without an index becomes ``cuda:LOCAL_RANK`` (and is
    made current) when several processes run; any other device is returned unchanged."""
    if device.type != "cuda" or device.index is not None or env_world_size() == 1:
        return device
    index, count = local_rank(), torch.cuda.device_count()
    if index >= count:
        raise ValueError(
            f"LOCAL_RANK {index} has no GPU: this node has {count} CUDA device(s); start at most "
            f"{count} processes per node (torchrun --nproc_per_node {count})"
        )
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def init(device: torch.device | None = None, backend: str | None = None) -> bool:
    """Join the process group described by torchrun's environment.

    Does nothing (returns False) with one process or when a group already exists; otherwise
    initializes the default group with ``backend`` (default: NCCL for a CUDA ``device``, gloo
    otherwise) and returns True: the caller then owns it and calls :func:`teardown`.
    """
    world = env_world_size()
    if world == 1:
        return False
    if not dist.is_available():
        raise ValueError(
            f"WORLD_SIZE={world} but this torch build has no torch.distributed; run one process"
        )
    if dist.is_initialized():
        if dist.get_world_size() != world:
            raise ValueError(
                f"a process group of {dist.get_world_size()} ranks exists but WORLD_SIZE={world}"
            )
        return False
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT", "RANK") if k not in os.environ]
    if missing:
        raise ValueError(
            f"WORLD_SIZE={world} is set but {', '.join(missing)} is not: start the processes with "
            "torchrun (e.g. torchrun --standalone --nproc_per_node 2 -m scorelab train ...)"
        )
    if backend is None:
        backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return True


def teardown() -> None:
    """Destroy the default process group if one exists."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op with one process)."""
    if not is_distributed():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def all_mean(t: Tensor) -> Tensor:
    """The mean of ``t`` over ranks (a new tensor; ``t`` itself with one process)."""
    if not is_distributed():
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def assert_same_across_ranks(tensors: Mapping[str, Tensor], what: str) -> None:
    """Raise unless every rank holds bit-identical ``tensors`` (compared by float64 sums).

    Data-parallel replicas start from the same weights and apply the same all-reduced
    gradients with the same optimizer, so their weights and EMA are identical; a difference
    means the ranks ran different code or data.
    """
    if not is_distributed():
        return
    names = [k for k, v in tensors.items() if v.is_floating_point() or v.dtype == torch.int64]
    if not names:
        return
    prints = torch.stack([tensors[k].detach().double().sum() for k in names])
    hi, lo = prints.clone(), prints.clone()
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    differ = [names[i] for i in torch.nonzero(hi != lo).flatten().tolist()]
    if differ:
        raise RuntimeError(
            f"the ranks hold different {what} ({', '.join(differ[:3])}"
            f"{', ...' if len(differ) > 3 else ''}): data-parallel replicas must stay identical; "
            "check that every rank runs the same code, data and configuration (and, across "
            "nodes, that the run folder is on a filesystem all nodes share)"
        )


def ddp_options(sync_buffers: bool) -> dict[str, bool]:
    """DistributedDataParallel keyword arguments this torch version understands: buffer syncing
    at every forward only when asked (``forward_sync_buffers`` from torch 2.13,
    ``broadcast_buffers`` before), and one batched gradient copy per bucket where available."""
    from torch.nn.parallel import DistributedDataParallel

    params = inspect.signature(DistributedDataParallel.__init__).parameters
    key = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    options = {key: sync_buffers}
    if "batched_grad_copy" in params:
        options["batched_grad_copy"] = True
    return options


# -- shards ------------------------------------------------------------------------------------
def split_batch(global_batch: int, world: int) -> int:
    """Examples per rank of a global batch; raises unless ``world`` divides ``global_batch``."""
    if global_batch % world:
        lower = global_batch - global_batch % world
        raise ValueError(
            f"batch_size {global_batch} (the global batch) does not split evenly over {world} "
            f"processes: choose a batch size divisible by {world} (e.g. {lower or world} or "
            f"{lower + world}), or start a number of processes that divides {global_batch}"
        )
    return global_batch // world


def shard(t: Tensor, rank: int, world: int) -> Tensor:
    """Rank ``rank``'s contiguous slice of ``t`` along dim 0 (``world`` must divide it)."""
    b = t.shape[0] // world
    return t[rank * b : (rank + 1) * b]


def share(n: int, rank: int, world: int) -> tuple[int, int]:
    """``(start, count)`` of rank ``rank``'s part of ``n`` items; the first ``n % world`` ranks
    take one more."""
    base, extra = divmod(n, world)
    return rank * base + min(rank, extra), base + (rank < extra)


def rank_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed for an independent stream keyed by ``(seed, *keys)`` (numpy SeedSequence),
    so rank streams do not overlap the streams of neighbouring seeds."""
    entropy = [int(seed) % 2**64, *(int(k) % 2**64 for k in keys)]
    hi, lo = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return (int(hi) << 32 | int(lo)) & (2**63 - 1)


# -- per-example draws -------------------------------------------------------------------------
_FACTORIES = {torch.randn, torch.rand, torch.randint}
_IN_PLACE = {Tensor.normal_, Tensor.uniform_}


def _size_arg(func: Callable, args: tuple, kwargs: dict) -> tuple[tuple[int, ...], int | None]:
    """The requested shape of a factory call and where it sits in ``args`` (None: in kwargs
    or given as separate ints)."""
    if "size" in kwargs:
        return tuple(kwargs["size"]), None
    if func is torch.randint:  # randint(high, size) or randint(low, high, size)
        return tuple(args[-1]), len(args) - 1
    if len(args) == 1 and isinstance(args[0], list | tuple | torch.Size):
        return tuple(args[0]), 0
    return tuple(int(a) for a in args), -1


class PerExampleDraws(TorchFunctionMode):
    """While active, a draw from ``generator`` whose leading dimension is the local batch is
    made at the global batch size on every rank, and this rank keeps its slice.

    Covers ``torch.randn``, ``torch.rand``, ``torch.randint`` and ``Tensor.normal_`` /
    ``uniform_``, which is how every scorelab objective draws (noise levels ``[batch]``, noise
    ``[batch, ...]``). Draws whose leading dimension is not the local batch are left alone:
    they are the same on every rank, as in one process. Any other random function that returns
    a per-example tensor from ``generator`` is an error, because every rank would draw the
    same values for different examples. Model calls run with the mode paused
    (:meth:`paused`), so the network's own operations pay nothing.
    """

    def __init__(self, generator: torch.Generator, local_batch: int, rank: int, world: int):
        super().__init__()
        self.generator, self.local, self.rank, self.world = generator, local_batch, rank, world

    def _slice(self, t: Tensor) -> Tensor:
        return t[self.rank * self.local : (self.rank + 1) * self.local]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if kwargs.get("generator") is not self.generator:
            return func(*args, **kwargs)
        if func in _FACTORIES:
            shape, at = _size_arg(func, args, kwargs)
            if not shape or shape[0] != self.local:
                return func(*args, **kwargs)
            full = (self.local * self.world, *shape[1:])
            if at is None:
                kwargs["size"] = full
            elif at == -1:
                args = (full,)
            else:
                args = (*args[:at], full, *args[at + 1 :])
            return self._slice(func(*args, **kwargs))
        if func in _IN_PLACE and args[0].ndim and args[0].shape[0] == self.local:
            target = args[0]
            full = target.new_empty((self.local * self.world, *target.shape[1:]))
            func(full, *args[1:], **kwargs)
            with torch.no_grad():
                target.copy_(self._slice(full))
            return target
        out = func(*args, **kwargs)
        if isinstance(out, Tensor) and out.ndim and out.shape[0] == self.local:
            name = getattr(func, "__name__", str(func))
            raise ValueError(
                f"{name} drew a per-example tensor from the training generator, which "
                "distributed training cannot shard (every rank would draw the same values): "
                "draw with torch.randn, torch.rand or torch.randint, batch dimension first"
            )
        return out

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Leave the mode for the duration of the block (it must be the innermost mode)."""
        self.__exit__(None, None, None)
        try:
            yield
        finally:
            self.__enter__()


# -- what the objective calls -----------------------------------------------------------------
class ForwardMethods(nn.Module):
    """Routes ``forward(*args, _method=name)`` to ``module.name(*args)``, so a method such as
    ``Denoiser.score`` runs inside DistributedDataParallel's (or torch.compile's) forward."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *args: Any, _method: str | None = None, **kwargs: Any) -> Any:
        if _method is None:
            return self.module(*args, **kwargs)
        return getattr(self.module, _method)(*args, **kwargs)


class ModelView:
    """The model as the objective sees it: calls and callable attributes (``score``, a
    sub-network) go through ``wrapped`` (DDP and/or compiled :class:`ForwardMethods`), other
    attributes (``num_classes``, ``sigma_data``) come from the plain ``model``; with
    ``draws``, that mode is paused while the network runs."""

    def __init__(self, model: nn.Module, wrapped: Callable, draws: PerExampleDraws | None = None):
        self._model, self._wrapped, self._draws = model, wrapped, draws

    def _call(self, *args: Any, **kwargs: Any) -> Any:
        if self._draws is None:
            return self._wrapped(*args, **kwargs)
        with self._draws.paused():
            return self._wrapped(*args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name in ("_model", "_wrapped", "_draws"):  # not set yet (copy, pickle)
            raise AttributeError(name)
        value = getattr(self._model, name)
        if callable(value) and not hasattr(nn.Module, name):
            return lambda *args, **kwargs: self._call(*args, _method=name, **kwargs)
        return value


# -- sampling across ranks --------------------------------------------------------------------
def sample_share(n: int, seed: int) -> tuple[int, int]:
    """``(count, seed)`` for this rank's part of ``n`` samples: ``(n, seed)`` in one process;
    under torchrun joins a gloo group (ended by :func:`merge_samples`), and rank ``r`` draws
    its :func:`share` with seed ``rank_seed(seed, r)``, an independent stream per rank."""
    world = env_world_size()
    if world == 1:
        return n, seed
    if n < world:
        raise ValueError(f"-n {n} is fewer samples than the {world} processes: ask for more")
    init(backend="gloo")
    r = rank()
    return share(n, r, world)[1], rank_seed(seed, r)


def _shard_path(out: Path, r: int, world: int) -> Path:
    return out.with_name(f".{out.stem}.rank{r:05d}-of-{world:05d}.npy")


def merge_samples(result: Any, out: Path) -> Any | None:
    """Gather every rank's samples on rank 0, in rank order.

    ``result`` has a ``samples`` tensor (a ``SampleResult``). In one process it is returned
    unchanged. Under torchrun each rank writes its shard beside ``out`` (``.NAME.rankR-of-W.npy``;
    ``out``'s folder must be one filesystem for all nodes), waits for the others, and ends the
    group; rank 0 returns ``result`` with the merged samples (and deletes the shards), the
    other ranks return None.
    """
    if not is_distributed():
        return result
    r, world = rank(), world_size()
    out.parent.mkdir(parents=True, exist_ok=True)
    path = _shard_path(out, r, world)
    np.save(path, result.samples.detach().cpu().numpy(), allow_pickle=False)
    barrier()
    teardown()
    if r != 0:
        return None
    parts = []
    for i in range(world):
        p = _shard_path(out, i, world)
        if not p.exists():
            raise ValueError(
                f"rank {i}'s samples {p} are not visible to rank 0: with several nodes, write "
                "--out to a filesystem every node shares"
            )
        parts.append(torch.from_numpy(np.load(p, allow_pickle=False)))
    for i in range(world):
        _shard_path(out, i, world).unlink()
    return dataclasses.replace(result, samples=torch.cat(parts))
