"""Noise mode on a GPU: codebook bits against the CPU reference, CPU-vs-GPU decode tolerance, and encode /
decode time per image with a real-size architecture and random weights.

    python benchmarks/noise_speed.py --json benchmarks/results/noise/h200.json            # on the GPU machine

1. Codebook: atoms generated on the device (cmcodec.models.noise: torch int64 Philox, eager and the compiled
   codebook scan) compared bit for bit with the numpy reference (cmcodec.core.noisecode).
2. Tolerance: a file encoded on the CPU (tests/tiny_models.py's tiny SD, float32) decoded on the CPU and on the
   GPU (float32): the largest pixel difference and the share of pixels more than 2 levels apart.
3. Speed: SD 1.5's architecture (benchmarks/gpu_speed.py's random-weight build, fp16, saved and loaded back
   through cmcodec's loader) coding a 768x512 image at each bpp, batch 1 (codec.encode_result and codec.decode:
   the product's own paths, rate control and packing included) and batch N (cmcodec.models.noise.run_batch
   and codec.decode_many), eager and with CUDA graphs over the UNet step plus the compiled codebook scan
   (--compile reduce-overhead's path). Times are the median of --reps steady calls; the first call of each
   shape (graph capture, compilation) is reported apart. Quality is not measured (random weights).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests", ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def codebook_check(device: str, n_big: int = 11008, atoms: int = 4096, compiled: bool = True) -> dict:
    """Device atoms against the numpy reference, bit for bit (n_big: the SD 1.5 latent of a 768x512 image)."""
    import numpy as np
    import torch

    from cmcodec.core import noisecode as nc
    from cmcodec.models import noise

    out = {}
    idx = np.array([0, 1, 5, 777, 4095, 16383])
    for n in (8, 1001, n_big):
        want = nc.atoms(12345, 3, idx, n)
        got = noise.gaussian(12345, 3, idx, nc.STREAM_ATOMS, n, device).cpu().numpy()
        out[f"atoms_n{n}"] = bool(np.array_equal(want.view(np.uint32), got.view(np.uint32)))
    want0 = nc.initial_noise(7, n_big)
    got0 = noise.initial_noise([7], n_big, device)[0].cpu().numpy()
    out["initial_noise"] = bool(np.array_equal(want0.view(np.uint32), got0.view(np.uint32)))
    r = torch.randn(n_big, 1, generator=torch.Generator().manual_seed(0))
    ref = torch.from_numpy(nc.atoms(99, 2, np.arange(atoms), n_big)) @ r
    fns = [("eager", noise._project)]
    if compiled:
        fns.append(("compiled", torch.compile(noise._project, dynamic=False, fullgraph=True)))
    for name, fn in fns:
        got = fn(torch.tensor(99, device=device), torch.tensor(2, device=device), torch.tensor(0, device=device),
                 r.to(device), atoms, noise._table(device)).cpu()
        out[f"projection_{name}_max_abs_diff"] = float((got - ref).abs().max())  # float sums: order differs
        top = min(100, atoms // 2)
        out[f"projection_{name}_same_top{top}"] = bool(set(torch.topk(got.abs().reshape(-1), top).indices.tolist())
                                                       == set(torch.topk(ref.abs().reshape(-1), top).indices.tolist()))
    out["spec_reference_values"] = [f"{x:08x}" for x in noise.gaussian(12345, 3, [5], 1, 8, device)[0].cpu().numpy()
                                    .view(np.uint32)]
    out["spec_reference_values_match"] = out["spec_reference_values"] == [
        "bfa0e535", "3eca304d", "bea6ddd4", "bf24e95c", "3fa3c5e1", "bf5c1395", "bff405cb", "3f47effc"]
    return out


def tolerance(device: str, folder: Path) -> dict:
    """A tiny-model file encoded on the CPU, decoded on the CPU and on the device (both float32)."""
    import numpy as np
    from PIL import Image
    from tiny_models import make_tiny_sd

    from cmcodec import codec

    tiny = folder / "tiny-sd"
    if not (tiny / "model_index.json").exists():
        make_tiny_sd(tiny)
    img = Image.open(ROOT / "fixtures/images/parrots_192x128.png").convert("RGB")
    data = codec.encode(img, mode="noise", caption="two parrots", max_bytes=200, profile="sd15", seed=3,
                        options=codec.EncodeOptions(model_path=str(tiny), device="cpu", noise_steps=6,
                                                    caption_coder="wlm2", noise_log2_k=8))
    cpu = np.asarray(codec.decode(data, codec.DecodeOptions(model_path=str(tiny), device="cpu")), dtype=int)
    gpu = np.asarray(codec.decode(data, codec.DecodeOptions(model_path=str(tiny), device=device,
                                                            dtype="float32")), dtype=int)
    d = np.abs(cpu - gpu)
    return {"file_bytes": len(data), "size": list(img.size), "max_abs_diff": int(d.max()),
            "mean_abs_diff": float(d.mean()), "share_over_2_levels": float((d > 2).mean())}


def speed(device: str, folder: Path, bpps: list[float], batches: list[int], variants: list[str], reps: int,
          emit, model: Path | None = None, shape: dict | None = None) -> None:
    """Encode and decode time per image at each bpp, batch and variant (model: a pipeline folder instead of the
    random-weight SD 1.5 build; shape: EncodeOptions' noise_steps / noise_log2_k instead of the profile's)."""
    from gpu_speed import _time, build_pipeline
    from PIL import Image

    from cmcodec import codec
    from cmcodec.core import noisecode
    from cmcodec.core.bitstream import read_header
    from cmcodec.core.profiles import get_profile
    from cmcodec.models import noise
    from cmcodec.models.loading import Accel

    model = model or build_pipeline("sd15", folder / "sd15")
    prof = get_profile("sd15")
    img = Image.open(ROOT / "fixtures/images/parrots_192x128.png").convert("RGB").resize((768, 512),
                                                                                          Image.Resampling.LANCZOS)
    for variant in variants:
        accel = Accel(compile="reduce-overhead") if variant == "graphs+compiled-scan" else None
        noise.compiled_projection(variant != "eager")
        for bpp in bpps:
            for b in batches:
                opts = codec.EncodeOptions(model_path=str(model), device=device, accel=accel, caption_coder="wlm2",
                                           **(shape or {}))
                dopts = codec.DecodeOptions(model_path=str(model), device=device, accel=accel)
                res = {}

                def enc1(res=res, bpp=bpp, opts=opts):
                    res["data"] = codec.encode_result(img, mode="noise", caption="", bpp=bpp, profile="sd15", seed=1,
                                                      options=opts).data

                if b == 1:  # gpu_speed._time: (median of reps, peak GiB, first call) after syncing the device
                    e, _, e_first = _time(enc1, reps, device)
                    data = res["data"]
                    d, _, d_first = _time(lambda data=data, dopts=dopts: codec.decode(data, dopts), reps, device)
                else:
                    enc1()
                    data = res["data"]
                    plan, _ = noisecode.unpack(read_header(data).section("noise").payload)
                    jobs = [noise.NoiseJob("", 768, 512, s, plan, image=img) for s in range(1, b + 1)]
                    e, _, e_first = _time(lambda jobs=jobs, accel=accel: noise.run_batch(prof, jobs, device=device,
                                                                                      model_path=str(model),
                                                                                      accel=accel),
                                          max(1, reps // 3), device)
                    files = [data] * b
                    d, _, d_first = _time(lambda files=files, dopts=dopts, b=b:
                                          list(codec.decode_many(files, dopts, batch_size=b)),
                                          max(1, reps // 3), device)
                    e, d, e_first, d_first = e / b, d / b, e_first, d_first
                plan, _ = noisecode.unpack(read_header(data).section("noise").payload)
                emit({"variant": variant, "bpp": bpp, "batch": b, "file_bytes": len(data), "plan": plan.__dict__,
                      "encode_s_per_image": e, "decode_s_per_image": d, "round_trip_s_per_image": e + d,
                      "first_encode_call_s": e_first, "first_decode_call_s": d_first,
                      "generation_size": list(prof.decode_size(768, 512))})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--models", type=Path, default=Path("/tmp/cmcodec-noise-models"))
    ap.add_argument("--bpps", type=float, nargs="+", default=[0.005, 0.02, 0.05])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--variants", nargs="+", default=["graphs+compiled-scan", "eager"])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--skip", nargs="*", default=[], help="parts to skip: codebook tolerance speed")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    import diffusers
    import torch

    result = {"device": torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu",
              "torch": torch.__version__, "diffusers": diffusers.__version__, "weights": "random (SD 1.5 architecture)",
              "command": "python " + " ".join(sys.argv), "rows": []}

    def save() -> None:
        if a.json:
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps(result, indent=1) + "\n")

    a.models.mkdir(parents=True, exist_ok=True)
    if "codebook" not in a.skip:
        result["codebook"] = codebook_check(a.device)
        print("codebook:", result["codebook"], flush=True)
        save()
    if "tolerance" not in a.skip:
        result["cpu_vs_gpu"] = tolerance(a.device, a.models)
        print("cpu vs gpu:", result["cpu_vs_gpu"], flush=True)
        save()

    def emit(row: dict) -> None:
        result["rows"].append(row)
        print(f"{row['variant']:>20} bpp {row['bpp']:<6} batch {row['batch']:>2}: {row['file_bytes']} B, "
              f"encode {row['encode_s_per_image']:.3f} s, decode {row['decode_s_per_image']:.3f} s per image "
              f"(first calls {row['first_encode_call_s']:.1f} / {row['first_decode_call_s']:.1f} s)", flush=True)
        save()

    if "speed" not in a.skip:
        speed(a.device, a.models, a.bpps, a.batches, a.variants, a.reps, emit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
