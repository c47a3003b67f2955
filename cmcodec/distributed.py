"""Sharding folder work across processes, for throughput on several GPUs:
one process per GPU, started by ``accelerate launch``
or ``torchrun``. Each process takes every WORLD_SIZE-th item; ``accelerate``'s PartialState supplies the
rank, the device and the barrier. Single-process runs never import torch or accelerate from here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def world() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment; (0, 1) when not launched."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


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
