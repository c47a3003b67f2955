"""End to end through the command line: `cmcodec encode` of a folder of images with blip-large, then
`cmcodec decode` of the .cmc files it wrote, with PNG outputs; images/s and where the time goes.

    python benchmarks/e2e_speed.py --files 1024 --batch-size 64 --profile sd-turbo-taesd \
        --json benchmarks/results/e2e/run1.json [--models /tmp/cmcodec-models] [--device cuda]

Real-size architectures with random weights (benchmarks/gpu_speed.py builds them: SD-Turbo's, TAESD's,
BLIP-large's), loaded by the CLI through cmcodec's own loaders. The commands run in this process through
the CLI's own entry point (``cmcodec.cli.main``), so that stages can be timed from inside: a first run over
one batch of files loads the models and warms up, then the timed run over all files. In the encode run the
random captioner is made to write captions of ``--tokens`` words (gpu_speed.caption_words_only, a
benchmark-only generation setting). Input images are made here: 768x512 smooth colour fields with noise,
saved as PNG.

Stages are the busy time of named calls (gpu_speed.StageClock), summed over threads: reading and parsing
files and writing outputs run in threads beside the model, so shares of the wall time can add up to more
than 1. Model stages (caption, start_batch) also give their span on the GPU's timeline
(``gpu_s``); the CPU stages give wall time only. ``--tiny`` runs the same path on CPU with tiny models
(tests/test_benchmarks.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

import gpu_speed  # noqa: E402


def make_images(folder: Path, n: int, size: tuple[int, int], seed: int = 0) -> None:
    """n RGB images of size: a random smooth colour field per image (upscaled 4x6 grid) plus mild noise."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from PIL import Image

    from cmcodec.media.fileio import save_image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size

    def one(i: int) -> None:
        grid = Image.fromarray(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)
        a = np.asarray(grid).astype(np.int16) + rng.integers(-12, 13, (h, w, 3), dtype=np.int16)
        save_image(Image.fromarray(a.clip(0, 255).astype(np.uint8)), folder / f"img{i:05d}.png")

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(one, range(n)))


def cli(args: list[str]) -> int:
    """Run the cmcodec command line in this process; a failed run ends the benchmark (nothing to time)."""
    from cmcodec.cli import main

    rc = 0
    try:
        main(args)
    except SystemExit as e:
        rc = int(e.code or 0)
    if rc:
        raise SystemExit(f"e2e_speed: cmcodec {args[0]} ended with exit status {rc}")
    return rc


def timed_run(command: str, warm: tuple[Path, Path], full: tuple[Path, Path], options: list[str],
              clock: gpu_speed.StageClock, stages: list[tuple[object, str, str, bool]], n: int, warm_n: int) -> dict:
    """One command over a warm-up folder (models load, first calls), then timed over the full folder, with
    the stages wrapped in clock (obj, attr, label, gpu: whether the call runs model work on the GPU)."""
    t0 = time.perf_counter()
    cli([command, str(warm[0]), "-o", str(warm[1]), *options])
    warmup = {"files": warm_n, "wall_s": round(time.perf_counter() - t0, 2)}
    for obj, attr, label, gpu in stages:
        clock.wrap(obj, attr, label, gpu)
    clock.reset()
    args = [command, str(full[0]), "-o", str(full[1]), *options]
    t0 = time.perf_counter()
    try:
        rc = cli(args)
    finally:
        wall = time.perf_counter() - t0
        clock.restore()
    stages_got = clock.totals()
    out = {"command": "cmcodec " + " ".join(args), "exit": rc, "files": n, "wall_s": round(wall, 3),
           "images_per_s": round(n / wall, 2), "warmup": warmup,
           "stages": {k: {**v, "share_of_wall": round(v.get("gpu_s", v["wall_s"]) / wall, 3)}
                      for k, v in stages_got.items()}}
    print(json.dumps({command: out}), flush=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--profile", default="sd-turbo-taesd")
    ap.add_argument("--tokens", type=int, default=20, help="caption length the random captioner writes")
    ap.add_argument("--size", default="768x512")
    ap.add_argument("--models", type=Path, default=Path("/tmp/cmcodec-models"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/cmcodec-e2e"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--skip", default="", help="comma-separated: encode, decode")
    ap.add_argument("--decode-options", default="",
                    help='more options for `cmcodec decode`, e.g. "--compile reduce-overhead --channels-last"')
    ap.add_argument("--encode-options", default="", help="more options for `cmcodec encode`")
    ap.add_argument("--writers", type=int, help="PNG writer threads of the folder decode (default: cores less two)")
    ap.add_argument("--tiny", action="store_true", help="tiny random models on CPU: the test of this path")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/e2e/latest.json")
    args = ap.parse_args(argv)

    import torch

    from cmcodec.core.profiles import get_profile
    from cmcodec.models import i2t, t2i

    size = tuple(int(x) for x in args.size.lower().split("x"))
    prof = get_profile(args.profile)
    cuda = args.device.startswith("cuda")
    t0 = time.perf_counter()
    if args.tiny:
        from tiny_models import make_tiny_sd, make_tiny_taesd

        sd = args.models / "tiny-sd"
        if not (sd / "model_index.json").exists():
            make_tiny_sd(sd)
        taesd = args.models / "tiny-taesd"
        if not (taesd / "config.json").exists():
            make_tiny_taesd(taesd)
        blip = gpu_speed.build_blip_large(args.models / "tiny-blip", gpu_speed.TINY_BLIP, "float32")
        dtype = "float32"
    else:
        sd = gpu_speed.build_pipeline("sd21", args.models / "sd21")
        taesd = gpu_speed.build_taesd(args.models / "taesd")
        blip = gpu_speed.build_blip_large(args.models / "blip-large")
        dtype = "float16"
    build_s = round(time.perf_counter() - t0, 1)
    shutil.rmtree(args.work, ignore_errors=True)
    imgs, warm_imgs = args.work / "images", args.work / "warm-images"
    make_images(imgs, args.files, size)
    make_images(warm_imgs, args.batch_size, size, seed=1)

    # the random captioner writes --tokens words per caption (benchmark only), whichever load made it
    real_load = i2t.load

    def load(*a, **k):
        proc, net, row, dev = real_load(*a, **k)
        if not net.text_decoder.generation_config.suppress_tokens:
            gpu_speed.caption_words_only(net, proc)
        return proc, net, row, dev

    i2t.load = load
    words = max(1, args.tokens // 2)  # the CLI asks 2 tokens per word of budget: --words W allows 2W tokens
    enc_common = ["--mode", "text", "--profile", prof.name, "--i2t", "blip-large", "--i2t-path", f"blip-large={blip}",
                  "--words", str(words), "--batch-size", str(args.batch_size), "--device", args.device,
                  "--dtype", dtype]
    dec_common = ["--model-path", f"{prof.name}={sd}", "--batch-size", str(args.batch_size), "--device",
                  args.device, "--dtype", dtype]
    if prof.vae:
        dec_common += ["--vae-path", f"{prof.name}={taesd}"]
    enc_common += shlex.split(args.encode_options)
    dec_common += shlex.split(args.decode_options)

    from cmcodec import codec, runs

    runs.PNG_WRITERS = args.writers
    from cmcodec.core import bitstream

    clock = gpu_speed.StageClock(cuda)
    result: dict = {"device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
                    "torch": torch.__version__, "python": platform.python_version(),
                    "weights": "random (real-size architectures)" if not args.tiny else "tiny random",
                    "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
                    "build_s": build_s, "files": args.files, "batch_size": args.batch_size, "profile": prof.name,
                    "size": list(size), "caption_tokens": args.tokens,
                    "png_writers": args.writers or runs.writers_default(), "cpu_cores": os.cpu_count()}
    skip = set(args.skip.split(","))
    if "encode" not in skip:
        result["encode"] = timed_run("encode", (warm_imgs, args.work / "warm-cmc"), (imgs, args.work / "cmc"),
                                     enc_common, clock, [
                                         (codec, "load_image", "read image", False),
                                         (i2t, "caption_each", "caption (I2T model)", True),
                                         (codec, "encode_result", "code file (caption coding, header), read image "
                                                                  "included", False),
                                         (runs, "write_bytes", "write .cmc", False)], args.files, args.batch_size)
    cmc = args.work / "cmc"
    if not cmc.exists() or len(list(cmc.glob("*.cmc"))) < args.files:
        # without the encode run (or if it failed): the same files from the encoder API with a fixed caption
        import cmcodec

        cmc.mkdir(parents=True, exist_ok=True)
        for p in sorted(imgs.glob("*.png")):
            if not (cmc / (p.stem + ".cmc")).exists():
                (cmc / (p.stem + ".cmc")).write_bytes(cmcodec.encode(
                    p, mode="text", caption="a red house with white windows under a blue sky", profile=prof.name))
    if "decode" not in skip:
        warm = args.work / "warm-cmc2"
        warm.mkdir()
        for p in sorted(cmc.glob("*.cmc"))[:args.batch_size]:
            shutil.copy(p, warm / p.name)
        result["decode"] = timed_run("decode", (warm, args.work / "warm-png"), (cmc, args.work / "png"), dec_common,
                                     clock, [
                                         (runs, "read_input", "read file", False),
                                         (bitstream, "read_header", "parse header", False),
                                         (codec, "_prepare", "decode caption", False),
                                         (t2i, "start_batch", "start_batch (T2I model call, GPU work queued)", True),
                                         (t2i, "finish_batch", "finish_batch (wait for the pixels, PIL)", False),
                                         (runs, "save_image", "write PNG (encode, fsync)", False),
                                         (runs, "_result", "wait for a writer (the run's own thread)", False)],
                                     args.files, args.batch_size)
        result["decode"]["outputs"] = len(list((args.work / "png").glob("*.png")))
    i2t.load = real_load
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
