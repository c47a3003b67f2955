"""Sharding folder work across processes, for throughput on several GPUs:
one process per GPU, started by ``accelerate launch``
or ``torchrun``. Each process takes every WORLD_SIZE-th item; ``accelerate``'s PartialState supplies the
rank, the device and the barrier. Single-process runs never import torch or accelerate from here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


# what torchrun (and accelerate launch, which runs it) sets beside RANK and WORLD_SIZE: without them a RANK or
# WORLD_SIZE is stray (left in a shell, or meant for another program) and no process group could form
LAUNCHER_VARS = ("MASTER_ADDR", "MASTER_PORT")


def world() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment; (0, 1) when not launched. Malformed or stray values
    are a one-line ConfigError, raised before torch is imported (a model-free run never imports it)."""
    env = os.environ
    raw_rank, raw_size = env.get("RANK", "").strip(), env.get("WORLD_SIZE", "").strip()
    if not raw_rank and not raw_size:
        return 0, 1
    try:
        rank, size = int(raw_rank or "0"), int(raw_size or "1")
    except ValueError:
        raise _stray(f"expected integers, found RANK={raw_rank!r} WORLD_SIZE={raw_size!r}") from None
    if size < 1 or not 0 <= rank < size:
        raise _stray(f"expected 0 <= RANK < WORLD_SIZE, found RANK={rank} WORLD_SIZE={size}")
    if size > 1 and not all(env.get(v) for v in LAUNCHER_VARS):
        missing = ", ".join(f"${v}" for v in LAUNCHER_VARS if not env.get(v))
        raise _stray(f"WORLD_SIZE={size} without {missing}, which a launcher sets")
    return rank, size


def _stray(why: str) -> Exception:
    """The error of launcher variables this run cannot use."""
    from .core.errors import ConfigError

    return ConfigError(f"launcher environment: {why}; run under torchrun or accelerate launch, or unset RANK and "
                       "WORLD_SIZE")


def _state():
    """accelerate's process state (initialises the process group: NCCL on GPUs, gloo on CPUs)."""
    import torch
    from accelerate import PartialState

    # without cpu=True accelerate treats CPU processes as independent and its barrier does nothing
    return PartialState(cpu=not torch.cuda.is_available())


def shard(items: list[T]) -> list[T]:
    """This process's share: items rank, rank + world, ... (all of them in a single process)."""
    rank, size = world()
    return items[rank::size] if size > 1 else items


def device(requested: str | None) -> str | None:
    """The requested device, else this process's own GPU when launched on several (None: backends decide)."""
    if requested or world()[1] == 1:
        return requested
    dev = str(_state().device)
    return dev if dev.startswith("cuda") else "cpu"


def barrier() -> None:
    """Wait for every process (no-op in a single process)."""
    if world()[1] > 1:
        _state().wait_for_everyone()


def is_main() -> bool:
    """True in rank 0 (and in a single process)."""
    return world()[0] == 0


def tag() -> str:
    """Message prefix naming this process when there are several."""
    rank, size = world()
    return f"[rank {rank}/{size}] " if size > 1 else ""


def rank_path(path: Path) -> Path:
    """Where this process appends its share of a merged JSON-lines file: the file itself in a single
    process, else ``<stem>.rank<R><suffix>`` beside it (merged by merge_lines)."""
    rank, size = world()
    return path if size == 1 else path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


def merge_lines(path: Path) -> None:
    """Append the lines of every ``<stem>.rank*<suffix>`` beside path to it and remove them (call in rank 0
    after a barrier; also picks up the files of an interrupted multi-process run)."""
    parts = sorted(path.parent.glob(f"{path.stem}.rank*{path.suffix}"))
    if not parts:
        return
    with path.open("a") as f:
        for p in parts:
            text = p.read_text()
            f.write(text if not text or text.endswith("\n") else text + "\n")
            p.unlink()


def merged(path: Path) -> None:
    """Barrier, rank 0 merges path's rank files, barrier: afterwards every process reads the whole file."""
    barrier()
    if is_main():
        merge_lines(path)
    barrier()
