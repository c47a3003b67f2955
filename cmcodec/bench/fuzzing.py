"""Fuzzing support (the reader must refuse any input with a CmcodecError, quickly):
the decoder-side target, a structured mutator, and a timed mutation loop.

The target is what a reader does with a stranger's file before any model runs: ``codec.validate``
(header, check, every payload). Its one rule: any input either validates or raises a ``CmcodecError``.
Inputs are prefixed with a control byte; when its low bit is set the rest is taken as a body whose
check (spec §5) is recomputed, so that mutations get past the CRC and reach the payload decoders.
``benchmarks/fuzz.py`` drives this with atheris (coverage-guided) or with ``run_mutations`` below.
"""

from __future__ import annotations

import random
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import codec
from ..core import bitstream
from ..core.errors import CmcodecError


def target(data: bytes) -> None:
    """Decode a fuzz input; only CmcodecError may escape as the project's answer to bad input."""
    if not data:
        return
    body = data[1:]
    if data[0] & 1:
        body = bitstream.seal(body)
    try:
        codec.validate(body)
    except CmcodecError:
        pass


def seeds(folder: Path) -> list[bytes]:
    """Seed inputs from a folder of golden files (fixtures/golden): each file as is, and its body with the CRC
    removed for CRC-fixing mutation."""
    out = []
    for p in sorted(folder.glob("*.cmc")):
        data = p.read_bytes()
        out.append(b"\x00" + data)
        out.append(b"\x01" + data[: -1 if len(data) <= bitstream.CRC8_MAX_FILE else -4])
    return out


def mutate(rng: random.Random, pool: list[bytes]) -> bytes:
    """One structured mutation of a pool input: bit flips, byte sets, inserts, deletes, splices, ue(v) edits."""
    b = bytearray(rng.choice(pool))
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        op = rng.randrange(7)
        n = len(b)
        if n <= 1:
            b += bytes([rng.randrange(256)])
            continue
        i = rng.randrange(1, n)  # byte 0 is the control byte
        if op == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[i] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == 2:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 3:
            del b[i : i + rng.randint(1, 16)]
        elif op == 4:
            other = rng.choice(pool)
            j = rng.randrange(len(other))
            b[i:] = other[j:]
        elif op == 5:
            b[i : i + 4] = bytes(4) if rng.random() < 0.5 else b"\xff" * 4  # long ue(v) runs / huge sizes
        else:
            del b[i:]
    b[0] = (b[0] & ~1) | rng.getrandbits(1) if rng.random() < 0.2 else b[0]
    return bytes(b)


@dataclass
class FuzzStats:
    """Figures of a mutation run."""

    inputs: int = 0
    seconds: float = 0.0
    other_exceptions: int = 0
    hangs_over_1s: int = 0
    slowest_s: float = 0.0
    peak_rss_mb: float = 0.0
    failures: list[tuple[str, bytes]] = field(default_factory=list)


def run_mutations(n: int, pool: list[bytes], seed: int = 0, hang_s: float = 1.0,
                  keep: int = 10) -> FuzzStats:
    """Run n mutated inputs through the target, timing each; keep up to ``keep`` failing inputs."""
    rng = random.Random(seed)
    if not pool:
        raise ValueError("run_mutations needs a non-empty seed pool (fuzzing.seeds(folder))")
    pool = list(pool)
    st = FuzzStats()
    start = time.perf_counter()
    for _ in range(n):
        data = mutate(rng, pool)
        t0 = time.perf_counter()
        try:
            target(data)
        except Exception as e:
            st.other_exceptions += 1
            if len(st.failures) < keep:
                st.failures.append((f"{type(e).__name__}: {e}", data))
        dt = time.perf_counter() - t0
        st.slowest_s = max(st.slowest_s, dt)
        if dt > hang_s:
            st.hangs_over_1s += 1
            if len(st.failures) < keep:
                st.failures.append((f"hang: {dt:.2f} s", data))
        st.inputs += 1
        if rng.random() < 0.01 and len(pool) < 2000:
            pool.append(data)  # let deeper mutations build on earlier ones
    st.seconds = time.perf_counter() - start
    st.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return st
