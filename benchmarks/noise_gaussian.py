"""Noise mode against the physical limit: Gaussian data in latent space, coded by the product's own sampler.

x0 ~ N(0, s^2 I) in n dimensions; the model is the exact denoiser: with x_t = sqrt(abar) x0 + sqrt(1 - abar) e,
E[x0 | x_t] = sqrt(abar) s^2 x_t / (abar s^2 + 1 - abar), returned as the epsilon it implies. The trajectory,
codebook and plan are cmcodec.models.noise.sample and cmcodec.core.noisecode.fit_plan, exactly what
`cmcodec encode --mode noise` runs with a UNet in place of this denoiser. For each rate R (bits per latent
dimension; the payload's bits over n, all of them counted) it prints the measured MSE per dimension beside
Shannon's D(R) = s^2 2^(-2R) and the perfect-realism bound 2 s^2 (1 - sqrt(1 - 2^(-2R))) (Theis et al. 2022:
the least MSE of any code whose outputs are distributed as the data), the gap to that bound in dB, and the
outputs' variance per dimension (s^2 when the outputs are realistic).

    python benchmarks/noise_gaussian.py                      # n = 4096, K = 2^12, T = 30, 4 images, CPU
    python benchmarks/noise_gaussian.py --device cuda --dims 24576 --log2k 14 --images 4   # SD 1.5 latent size
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RATES = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)


def shannon(r: float, s2: float) -> float:
    return s2 * 2 ** (-2 * r)


def realism_bound(r: float, s2: float) -> float:
    return 2 * s2 * (1 - math.sqrt(1 - 2 ** (-2 * r)))


def exact_denoiser(s2: float):
    """The Denoiser of Gaussian data: epsilon implied by the posterior mean at timestep t."""
    from cmcodec.core import noisecode

    abar = noisecode.alphas_cumprod()

    def denoise(x, t: int):
        a = abar[t]
        x0 = math.sqrt(a) * s2 / (a * s2 + 1 - a) * x
        return (x - math.sqrt(a) * x0) / math.sqrt(1 - a)

    return denoise


def run(dims: int, log2k: int, steps: int, images: int, rates: tuple[float, ...], s: float, device: str,
        seed: int = 0) -> list[dict]:
    """One row per rate: the rate the plans reached, the measured MSE and the bounds."""
    import torch

    from cmcodec.core import noisecode
    from cmcodec.models import noise

    s2 = s * s
    g = torch.Generator().manual_seed(seed)
    x0 = (torch.randn(images, dims, generator=g) * s).to(device)
    denoise = exact_denoiser(s2)
    rows = []
    for r in rates:
        plan = noisecode.fit_plan(steps, log2k, math.floor(r * dims / 8))
        seeds = [seed * 1000 + i + 1 for i in range(images)]
        t0 = time.perf_counter()
        enc = noise.sample(denoise, seeds, [plan] * images, dims, device, targets=x0)
        dec = noise.sample(denoise, seeds, [plan] * images, dims, device, codes=enc.codes)
        secs = time.perf_counter() - t0
        if not torch.equal(enc.x0, dec.x0):
            raise RuntimeError(f"rate {r}: the decoder's trajectory differs from the encoder's")
        mse = float(((dec.x0 - x0) ** 2).mean())
        bits = plan.nbytes() * 8
        rate = bits / dims
        bound = realism_bound(rate, s2)
        rows.append({
            "target_bits_per_dim": r, "bits_per_dim": rate, "plan": plan.__dict__, "mse": mse,
            "shannon_D": shannon(rate, s2), "realism_bound": bound, "gap_db": 10 * math.log10(mse / bound),
            "gap_to_shannon_db": 10 * math.log10(mse / shannon(rate, s2)),
            "output_var": float(dec.x0.var()), "seconds": secs,
        })
    return rows


def table(rows: list[dict]) -> str:
    out = ["| target R | R (bits/dim) | T, C, K, M, R+ | MSE | D(R) Shannon | realism bound | gap (dB) | "
           "output var |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p = r["plan"]
        out.append(f"| {r['target_bits_per_dim']} | {r['bits_per_dim']:.3f} | {p['steps']}, {p['coded']}, "
                   f"2^{p['log2_k']}, {p['atoms']}, {p['extra']} | {r['mse']:.4f} | {r['shannon_D']:.4f} | "
                   f"{r['realism_bound']:.4f} | {r['gap_db']:+.2f} | {r['output_var']:.3f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dims", type=int, default=4096)
    ap.add_argument("--log2k", type=int, default=12)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--sigma", type=float, default=1.0)
    ap.add_argument("--rates", type=float, nargs="+", default=list(RATES))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--compile", action="store_true", help="fuse the codebook scan with torch.compile (GPUs)")
    ap.add_argument("--json", type=Path, help="write the rows and settings here")
    a = ap.parse_args(argv)
    if a.compile:
        from cmcodec.models import noise

        noise.compiled_projection(True)
    rows = run(a.dims, a.log2k, a.steps, a.images, tuple(a.rates), a.sigma, a.device)
    print(table(rows))
    if a.json:
        import torch

        dev = torch.cuda.get_device_name() if a.device.startswith("cuda") else platform.processor() or "cpu"
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"settings": {k: (str(v) if isinstance(v, Path) else v)
                                                   for k, v in vars(a).items()},
                                      "device": dev, "command": " ".join(["python", *sys.argv]), "rows": rows},
                                     indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
