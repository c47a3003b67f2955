"""Folder decode on one GPU against several (one process per GPU, torchrun), through the real CLI.

    python benchmarks/multi_gpu.py [--files 512] [--gpus 1,2] [--batch-size 16] [--mode text]
                                   [--models /tmp/cmcodec-models] [--json benchmarks/results/multi_gpu.json]

Builds the sd-turbo architecture with random weights (as gpu_speed.py does), writes ``--files`` .cmc files
of one caption each (no captioner needed: ``encode(caption=...)``), then times
``cmcodec decode IN/ -o OUT/ --batch-size B`` started plainly (1 GPU) and under
``torchrun --nproc_per_node N`` (N GPUs; each process decodes every N-th file on its own GPU). Wall
times include process start and model loading; a one-file decode is timed too, so the steady rate
(files / (wall - one-file wall)) is reported beside the plain one. The outputs of every run are checked:
one PNG per file, all of the original size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def make_files(folder: Path, n: int, mode: str) -> None:
    """n files of 768x512 originals, each with its own caption and seed."""
    from PIL import Image

    import cmcodec

    folder.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (768, 512), (120, 110, 100))
    words = ["red", "house", "white", "windows", "blue", "sky", "trees", "garden", "old", "car", "street", "dog",
             "river", "boat"]
    for i in range(n):
        cap = " ".join(words[(i + k) % len(words)] for k in range(12))
        (folder / f"img{i:04d}.cmc").write_bytes(cmcodec.encode(img, mode=mode, caption=cap, seed=i))


def run_decode(src: Path, out: Path, gpus: int, model: Path, batch: int) -> float:
    """Wall seconds of one CLI decode of a folder (or file) on ``gpus`` processes."""
    cli = ["-m", "cmcodec.cli", "decode", str(src), "-o", str(out), "--model-path", str(model),
           "--batch-size", str(batch), "--force"]
    cmd = [sys.executable, *cli] if gpus == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}", *cli]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"decode on {gpus} GPU(s) failed ({r.returncode}): {r.stderr[-2000:]}")
    return wall


def main() -> None:
    """Build, make files, time each GPU count; print a table and write JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=512)
    ap.add_argument("--gpus", default="1,2")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--mode", default="text")
    ap.add_argument("--models", type=Path, default=Path("/tmp/cmcodec-models"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/cmcodec-multi"))
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/multi_gpu.json")
    args = ap.parse_args()
    import torch
    from gpu_speed import build_pipeline
    from PIL import Image

    model = build_pipeline("sd21", args.models / "sd21")
    src = args.work / "in"
    make_files(src, args.files, args.mode)
    one = args.work / "one"
    one.mkdir(parents=True, exist_ok=True)
    (one / "img0000.cmc").write_bytes((src / "img0000.cmc").read_bytes())
    rows = []
    for g in [int(x) for x in args.gpus.split(",")]:
        if g > torch.cuda.device_count():
            rows.append({"gpus": g, "error": f"only {torch.cuda.device_count()} GPU(s) here"})
            continue
        start = run_decode(one, args.work / f"one-out{g}", g, model, args.batch_size)
        wall = run_decode(src, args.work / f"out{g}", g, model, args.batch_size)
        pngs = sorted((args.work / f"out{g}").glob("*.png"))
        sizes = {Image.open(p).size for p in pngs}
        if len(pngs) != args.files or sizes != {(768, 512)}:  # a timing of a run that lost files is no result
            raise SystemExit(f"{g} GPU(s): expected {args.files} 768x512 PNGs, found {len(pngs)} of sizes {sizes}")
        rows.append({"gpus": g, "files": args.files, "batch_size": args.batch_size, "mode": args.mode,
                     "wall_s": round(wall, 2), "files_per_s": round(args.files / wall, 2),
                     "one_file_wall_s": round(start, 2),
                     "steady_files_per_s": round(args.files / max(1e-9, wall - start), 2)})
        print(json.dumps(rows[-1]), flush=True)
    base = next((r for r in rows if r.get("gpus") == 1 and "error" not in r), None)
    for r in rows:
        if base and "error" not in r:
            r["speedup"] = round(r["steady_files_per_s"] / base["steady_files_per_s"], 2)
    result = {"device": f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}", "torch": torch.__version__,
              "weights": "random (sd-turbo architecture)", "rows": rows,
              "command": "python " + " ".join(sys.argv)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(f"\n{result['device']}, torch {result['torch']}, profile sd-turbo ({args.mode} mode), random weights")
    print(f"{'GPUs':>5}{'files':>7}{'wall s':>9}{'files/s':>9}{'1-file s':>10}{'steady/s':>10}{'speed-up':>10}")
    for r in rows:
        if "error" in r:
            print(f"{r['gpus']:>5}  {r['error']}")
        else:
            print(f"{r['gpus']:>5}{r['files']:>7}{r['wall_s']:>9}{r['files_per_s']:>9}{r['one_file_wall_s']:>10}"
                  f"{r['steady_files_per_s']:>10}{r.get('speedup', ''):>10}")


if __name__ == "__main__":
    main()
