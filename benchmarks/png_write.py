"""How fast a folder decode writes its outputs: fileio.save_image (PNG encoding, temp file, fsync, lock,
link into place) of many decoded pictures into one folder, from writer threads, as `cmcodec decode DIR/`
does. Prints a table and writes JSON.

    python benchmarks/png_write.py --kodak ../shared/data/kodak --files 480 --threads 2 \
        --json benchmarks/results/png_write/cpu2.json

Three kinds of picture, each at 768x512: Kodak photographs (what a decoder's output looks like at best), a
smooth picture (a small grid upscaled: a generated image resized up, a pixel map) and noise (what random
weights decode to, the benchmarks' GPU runs). It runs whatever cmcodec is importable, so the same command
under another checkout's PYTHONPATH gives the before / after pair.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pictures(kind: str, n: int, kodak: Path | None, size: tuple[int, int] = (768, 512)) -> list:
    """n PIL pictures of one kind (cycling through the Kodak folder's images for "kodak")."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    w, h = size
    if kind == "kodak":
        if kodak is None:
            raise SystemExit("png_write: --kodak FOLDER is needed for the kodak pictures")
        srcs = [Image.open(p).convert("RGB") for p in sorted(kodak.glob("*.png"))]
        if not srcs:
            raise SystemExit(f"png_write: no PNG images in {kodak}")
        return [srcs[i % len(srcs)] for i in range(n)]
    if kind == "smooth":
        base = [Image.fromarray(rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)
                for _ in range(8)]
        return [base[i % len(base)] for i in range(n)]
    if kind == "noise":
        base = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for _ in range(8)]
        return [base[i % len(base)] for i in range(n)]
    raise SystemExit(f"png_write: unknown picture kind {kind!r} (kodak, smooth, noise)")


def write_all(imgs: list, folder: Path, threads: int) -> dict:
    """Save every picture into one new folder from `threads` writer threads; wall and CPU seconds, bytes."""
    from cmcodec.media import fileio

    folder.mkdir(parents=True)
    t0, c0 = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(lambda a: fileio.save_image(a[1], folder / f"o{a[0]:06d}.png"), enumerate(imgs)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    size = sum(p.stat().st_size for p in folder.glob("*.png"))
    return {"files": len(imgs), "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "images_per_s": round(len(imgs) / wall, 1), "cpu_ms_per_image": round(1000 * cpu / len(imgs), 2),
            "mb": round(size / 1e6, 2)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kodak", type=Path, help="folder of the Kodak PNGs (../shared/data/kodak)")
    ap.add_argument("--kinds", default="kodak,smooth,noise")
    ap.add_argument("--files", type=int, default=480, help="pictures written per kind, into one folder")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--work", type=Path, help="where the outputs go (default: a temp folder, removed)")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/png_write/latest.json")
    args = ap.parse_args(argv)

    import cmcodec
    from cmcodec.media import fileio

    work = args.work or Path(tempfile.mkdtemp(prefix="cmcodec-png-write-"))
    rows = []
    try:
        for kind in args.kinds.split(","):
            imgs = pictures(kind, args.files, args.kodak)
            out = work / kind
            shutil.rmtree(out, ignore_errors=True)
            rows.append({"kind": kind, **write_all(imgs, out, args.threads)})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    result = {"cmcodec": cmcodec.__version__, "cmcodec_path": str(Path(cmcodec.__file__).parent),
              "png_settings": getattr(fileio, "PNG_IMAGECODECS", None), "threads": args.threads,
              "cpu_cores": os.cpu_count(), "python": platform.python_version(),
              "command": "python benchmarks/png_write.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "rows": rows}
    print(f"{'kind':8} {'files':>6} {'wall s':>8} {'images/s':>9} {'CPU ms/image':>13} {'MB':>8}")
    for r in rows:
        print(f"{r['kind']:8} {r['files']:>6} {r['wall_s']:>8} {r['images_per_s']:>9} {r['cpu_ms_per_image']:>13} "
              f"{r['mb']:>8}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
