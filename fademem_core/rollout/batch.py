"""Batch generation over many prompts, sharded across GPUs with torchrun.

``torchrun --nproc-per-node N -m fademem_core generate --prompt-file prompts.txt --out-dir out/``
starts N processes; rank ``r`` takes prompts ``r, r+N, r+2N, ...`` one at a time, so every GPU
holds one model and one rollout.  Outputs are named by prompt index (``0000.mp4``, ...), so the
result does not depend on N.  Without torchrun (no ``WORLD_SIZE`` in the environment) the same
code runs every prompt in one process.
"""
from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, TypeVar

import torch

__all__ = ["DistInfo", "dist_info", "shard", "output_name", "ItemResult", "run_sharded"]

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a torchrun launch (rank 0 of 1 when not launched)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def launched(self) -> bool:
        return self.world_size > 1

    def device(self) -> torch.device:
        """This rank's GPU when there is one, else the CPU."""
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank % torch.cuda.device_count())
        return torch.device("cpu")


def dist_info(env: Mapping[str, str] | None = None) -> DistInfo:
    """Read torchrun's ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (defaults: one process)."""
    env = os.environ if env is None else env

    def _int(name: str, default: int) -> int:
        raw = env.get(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None

    world = _int("WORLD_SIZE", 1)
    rank = _int("RANK", 0)
    local = _int("LOCAL_RANK", rank)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def shard(num_items: int, rank: int, world_size: int) -> list[int]:
    """Indices this rank handles: round-robin, so ranks finish at about the same time."""
    if num_items < 0 or world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"bad shard request: {num_items} items, rank {rank} of {world_size}")
    return list(range(rank, num_items, world_size))


def output_name(index: int, num_items: int, suffix: str = ".mp4") -> str:
    """File name of item ``index``: zero-padded (at least 4 digits) so names sort in order."""
    width = max(4, len(str(max(num_items - 1, 0))))
    return f"{index:0{width}d}{suffix}"


@dataclass(frozen=True)
class ItemResult:
    """What happened to one item: its value, or the one-line error that stopped it."""

    index: int
    rank: int
    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def run_sharded(items: Sequence[T], work: Callable[[int, T], Any],
                info: DistInfo | None = None, backend: str | None = None,
                on_error: Callable[[int, BaseException], None] | None = None) -> list[ItemResult]:
    """Run ``work(index, item)`` for this rank's share of ``items``; return every rank's results.

    Launched by torchrun, the process group is created here (``nccl`` with CUDA, else ``gloo``)
    unless it already exists, results are gathered so every rank gets the full list (sorted by
    index), and a group created here is destroyed before returning.  A failing item does not
    stop the others: its error is recorded (``on_error`` sees the exception first).
    ``KeyboardInterrupt`` still stops everything.
    """
    info = dist_info() if info is None else info
    mine: list[ItemResult] = []
    created = False
    if info.launched:
        import torch.distributed as dist

        if not dist.is_initialized():
            if backend is None:
                backend = "nccl" if torch.cuda.is_available() else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(info.device())
            dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
            created = True
    try:
        for index in shard(len(items), info.rank, info.world_size):
            try:
                mine.append(ItemResult(index, info.rank, value=work(index, items[index])))
            except Exception as exc:  # one bad prompt must not sink the batch
                if on_error is not None:
                    on_error(index, exc)
                msg = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else \
                    "".join(traceback.format_exception_only(type(exc), exc)).strip()
                mine.append(ItemResult(index, info.rank, error=msg))
        if not info.launched:
            return mine
        import torch.distributed as dist

        gathered: list[list[ItemResult] | None] = [None] * info.world_size
        dist.all_gather_object(gathered, mine)
        return sorted((r for part in gathered for r in (part or [])), key=lambda r: r.index)
    finally:
        if created:
            import torch.distributed as dist

            dist.destroy_process_group()
