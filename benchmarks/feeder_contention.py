"""How much a folder decode's PNG writers slow the thread that feeds the GPU, without a GPU: a feeder thread
does what launching kernels does (Python and a short call into torch, many times over) while writer threads
save 768x512 noise pictures through fileio.save_image, as `cmcodec decode DIR/` writes. The feeder's rate
is printed against its rate alone, for each writer count and priority. Prints a table and writes JSON.

    python benchmarks/feeder_contention.py --writers 0,2,1 --json benchmarks/results/png_write/feeder_cpu2.json

Rows: every writer count given, at the process's priority and at runs.WRITER_NICENESS below it (Linux); the
folder decode's default is runs.writers_default() writers, lowered.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def feed(seconds: float) -> float:
    """Small torch calls per second from this thread (50 per round: Python, then a short C call each)."""
    import torch

    x = torch.randn(64, 64)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        y = x
        for _ in range(50):
            y = torch.relu(y + 1.0)
        n += 50
    return n / (time.perf_counter() - t0)


def one(writers: int, lowered: bool, seconds: float) -> dict:
    """The feeder's rate while `writers` threads write PNGs (at lower priority if lowered)."""
    import numpy as np
    from PIL import Image

    from cmcodec import runs
    from cmcodec.media import fileio

    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (512, 768, 3), dtype=np.uint8))
    folder = Path(tempfile.mkdtemp(prefix="cmcodec-feeder-"))
    stop = threading.Event()

    def write(k: int) -> None:
        if lowered:
            runs._lower_priority()
        i = 0
        while not stop.is_set():
            fileio.save_image(img, folder / f"w{k}_{i % 64}.png", force=True)
            i += 1

    threads = [threading.Thread(target=write, args=(k,)) for k in range(writers)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3 if writers else 0)
        t0 = time.perf_counter()
        rate = feed(seconds)
        wall = time.perf_counter() - t0
    finally:
        stop.set()
        for t in threads:
            t.join()
        shutil.rmtree(folder, ignore_errors=True)
    return {"writers": writers, "writer_priority": f"nice +{runs.WRITER_NICENESS}" if lowered else "same",
            "feeder_calls_per_s": round(rate), "seconds": round(wall, 2)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--writers", default="0,2,1", help="writer counts to measure (0: the feeder alone)")
    ap.add_argument("--seconds", type=float, default=4.0, help="how long the feeder is timed per row")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/png_write/feeder_latest.json")
    args = ap.parse_args(argv)

    import torch

    from cmcodec import runs

    torch.set_num_threads(1)  # one feeder thread, as the GPU's: its own ops stay on its core
    rows = []
    for w in [int(x) for x in args.writers.split(",") if x]:
        for lowered in ([False] if w == 0 else [False, True] if sys.platform.startswith("linux") else [False]):
            rows.append(one(w, lowered, args.seconds))
            print(json.dumps(rows[-1]), flush=True)
    alone = next((r["feeder_calls_per_s"] for r in rows if r["writers"] == 0), None)
    for r in rows:
        r["share_of_alone"] = round(r["feeder_calls_per_s"] / alone, 3) if alone else None
    result = {"cpu_cores": os.cpu_count(), "writers_default": runs.writers_default(),
              "python": platform.python_version(), "torch": torch.__version__,
              "command": "python benchmarks/feeder_contention.py "
                         + " ".join(argv if argv is not None else sys.argv[1:]),
              "rows": rows}
    print(f"{'writers':>7} {'priority':>9} {'feeder calls/s':>15} {'of alone':>9}")
    for r in rows:
        share = r["share_of_alone"] or ""
        print(f"{r['writers']:>7} {r['writer_priority']:>9} {r['feeder_calls_per_s']:>15,} {share:>9}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
