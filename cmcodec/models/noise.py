"""The noise-coded mode's sampler and codebook on torch devices (spec §10).

``sample`` is the one trajectory both sides run: the encoder passes the target latents and gets the step codes
it chose, the decoder passes the codes and gets the same trajectory. The denoiser is a callable, so the
Gaussian benchmark (benchmarks/noise_gaussian.py) runs this very function with the exact denoiser E[x0 | x_t]
in place of a UNet. Atoms come from ``gaussian``, the torch twin of ``core.noisecode.gaussian_blocks``: 32-bit
Philox arithmetic in int64 with 16-bit-split products, the same quantile table, bit-identical on CPU and GPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..core import noisecode as nc
from ..core.noisecode import Plan, StepCode

ATOM_CHUNK_VALUES = 1 << 26  # values generated at once while the encoder scans a codebook (256 MiB of float32)
_TABLES: dict[str, Any] = {}


def _table(device: Any) -> Any:
    """The quantile table (spec §10.2) on a device, cached."""
    import torch

    key = str(device)
    if key not in _TABLES:
        _TABLES[key] = torch.from_numpy(nc.quantile_table()).to(device)
    return _TABLES[key]


def _mulhilo(a: Any, m: int) -> tuple[Any, Any]:
    """(hi, lo) 32-bit halves of the 64-bit product of 32-bit a (int64 tensor) and the constant m, without
    overflowing int64: a = ah * 2^16 + al, so a * m = (ah * m) * 2^16 + al * m with both products below 2^48."""
    ah, al = a >> 16, a & 0xFFFF
    p_hi, p_lo = ah * m, al * m
    s = ((p_hi & 0xFFFF) << 16) + p_lo  # below 2^49
    return (p_hi >> 16) + (s >> 32), s & nc.MASK32


def philox(c0: Any, c1: Any, c2: Any, c3: Any, key: tuple[int, int]) -> tuple[Any, Any, Any, Any]:
    """Philox4x32-10 on int64 tensors holding 32-bit words (broadcast together); four int64 word tensors."""
    k0, k1 = key[0] & nc.MASK32, key[1] & nc.MASK32
    for r in range(nc.PHILOX_ROUNDS):
        if r:
            k0, k1 = (k0 + nc.PHILOX_W[0]) & nc.MASK32, (k1 + nc.PHILOX_W[1]) & nc.MASK32
        hi0, lo0 = _mulhilo(c0, nc.PHILOX_M[0])
        hi1, lo1 = _mulhilo(c2, nc.PHILOX_M[1])
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def gaussian(seed: int, step: int, atoms: Any, stream: int, n: int, device: Any) -> Any:
    """(len(atoms), n) float32 on device: spec §10.2's values, identical to core.noisecode.gaussian_blocks."""
    import torch

    if torch.device(device).type == "cpu":  # numpy's uint64 arithmetic is the reference and 4x faster on CPUs
        idx = torch.as_tensor(atoms, dtype=torch.int64).reshape(-1).numpy()
        return torch.from_numpy(nc.gaussian_blocks(seed, step, idx, stream, n))
    return gaussian_int64(seed, step, atoms, stream, n, device)


def gaussian_int64(seed: int, step: int, atoms: Any, stream: int, n: int, device: Any) -> Any:
    """gaussian in torch int64 arithmetic on any device (what GPUs run; tests run it on the CPU too)."""
    import torch

    atoms = torch.as_tensor(atoms, dtype=torch.int64, device=device).reshape(-1, 1)
    nb = -(-n // nc.VALUES_PER_BLOCK)
    blocks = torch.arange(nb, dtype=torch.int64, device=device).reshape(1, -1)
    zero = torch.zeros((), dtype=torch.int64, device=device)
    words = philox(blocks, atoms, zero + step, zero + stream, (seed, 0))
    w = torch.stack(torch.broadcast_tensors(*words), dim=-1)  # (A, nb, 4)
    idx = torch.stack([w >> 16, w & 0xFFFF], dim=-1).reshape(atoms.shape[0], nb * nc.VALUES_PER_BLOCK)[:, :n]
    return _table(device)[idx]


def initial_noise(seeds: Sequence[int], n: int, device: Any) -> Any:
    """(B, n) float32: x_T of each image (spec §10.2, stream 0)."""
    import torch

    return torch.cat([gaussian(s, 0, [0], nc.STREAM_INITIAL, n, device) for s in seeds])


def combine(seed: int, step: int, code: StepCode, n: int, device: Any) -> Any:
    """(n,) float32: the step's noise, the signed sum of its atoms in increasing index order scaled to norm
    sqrt(n) (spec §10.3). The encoder calls this too, so both sides add the same floats."""
    import torch

    a = gaussian(seed, step, list(code.indices), nc.STREAM_ATOMS, n, device)
    s = torch.tensor(code.signs, dtype=torch.float32, device=device).reshape(-1, 1)
    z = (a * s).sum(0)
    return z * (math.sqrt(n) / z.norm().clamp_min(1e-20))


def _project(seed: Any, step: Any, a0: Any, r: Any, count: int, table: Any) -> Any:
    """<atom, r> for atoms a0 .. a0 + count - 1 of a step's codebook, on r's device, with seed, step and a0 as
    int64 tensors (so that one compiled graph serves every step and seed)."""
    import torch

    n = r.shape[0]
    nb = -(-n // nc.VALUES_PER_BLOCK)
    dev = r.device
    atoms = (a0 + torch.arange(count, dtype=torch.int64, device=dev)).reshape(-1, 1)
    blocks = torch.arange(nb, dtype=torch.int64, device=dev).reshape(1, -1)
    c0, c1, c2, c3 = blocks, atoms, step + 0 * atoms, torch.full_like(atoms, nc.STREAM_ATOMS)
    k0, k1 = seed, seed * 0
    for i in range(nc.PHILOX_ROUNDS):  # philox() with the key as tensors
        if i:
            k0, k1 = (k0 + nc.PHILOX_W[0]) & nc.MASK32, (k1 + nc.PHILOX_W[1]) & nc.MASK32
        hi0, lo0 = _mulhilo(c0, nc.PHILOX_M[0])
        hi1, lo1 = _mulhilo(c2, nc.PHILOX_M[1])
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    w = torch.stack(torch.broadcast_tensors(c0, c1, c2, c3), dim=-1)
    idx = torch.stack([w >> 16, w & 0xFFFF], dim=-1).reshape(count, nb * nc.VALUES_PER_BLOCK)[:, :n]
    return table[idx] @ r


_COMPILED: dict[str, Any] = {}


def compiled_projection(on: bool = True) -> None:
    """Fuse the encoder's codebook scan into one kernel per chunk with torch.compile (GPUs; first call of each
    latent size compiles). The atoms are the same bits either way (benchmarks/noise_speed.py checks)."""
    import torch

    if on:
        _COMPILED["project"] = torch.compile(_project, dynamic=False, fullgraph=True)
    else:
        _COMPILED.pop("project", None)


def select(seed: int, step: int, residual: Any, k: int, m: int) -> StepCode:
    """Turbo-DDCM's choice (spec §10.3, informative): the m atoms of the step's codebook of k with the largest
    |<atom, residual>|, signed by their inner products, scanned in chunks so no codebook is held whole."""
    import torch

    n = residual.numel()
    r = residual.reshape(-1, 1).float()
    dev = residual.device
    per = max(1, min(k, ATOM_CHUNK_VALUES // max(1, n)))
    proj = torch.empty(k, dtype=torch.float32, device=dev)
    if dev.type == "cpu":
        for a0 in range(0, k, per):
            a1 = min(k, a0 + per)
            atoms = gaussian(seed, step, torch.arange(a0, a1), nc.STREAM_ATOMS, n, dev)
            proj[a0:a1] = (atoms @ r).reshape(-1)
    else:
        per = 1 << (per.bit_length() - 1)  # a power of two: K is one, so every chunk has this one shape
        fn = _COMPILED.get("project", _project)
        s_t = torch.tensor(seed & nc.MASK32, dtype=torch.int64, device=dev)
        st_t = torch.tensor(step, dtype=torch.int64, device=dev)
        for a0 in range(0, k, per):
            cnt = min(per, k - a0)
            proj[a0:a0 + cnt] = fn(s_t, st_t, torch.tensor(a0, dtype=torch.int64, device=dev), r, cnt,
                                   _table(dev)).reshape(-1)
    top = torch.topk(proj.abs(), m).indices
    order = torch.sort(top).values
    signs = proj[order]
    return StepCode(tuple(int(i) for i in order.tolist()), tuple(1 if v >= 0 else -1 for v in signs.tolist()))


Denoiser = Callable[[Any, int], Any]  # (x_t as (B, n) float32, timestep t) -> epsilon as (B, n)


@dataclass(frozen=True)
class Trajectory:
    """What sample returns: the final x0 estimate (B, n) and each image's step codes."""

    x0: Any
    codes: list[list[StepCode]]


def sample(denoise: Denoiser, seeds: Sequence[int], plans: Sequence[Plan], n: int, device: Any, *,
           targets: Any = None, codes: Sequence[Sequence[StepCode]] | None = None) -> Trajectory:
    """Run the T-step trajectory of spec §10.3 for a batch (every plan of one step count T). With targets
    ((B, n) latents) the coded steps choose their atoms (encoding); with codes they take them (decoding);
    a plan coding fewer steps than it has codes is a prefix decode (§10.6)."""
    import torch

    steps = {p.steps for p in plans}
    if len(steps) != 1:
        raise ValueError("sample takes plans of one step count")
    if (targets is None) == (codes is None):
        raise ValueError("sample takes targets (encode) or codes (decode)")
    coefs = nc.step_coefs(steps.pop())
    x = initial_noise(seeds, n, device)
    chosen: list[list[StepCode]] = [[] for _ in seeds]
    for i, c in enumerate(coefs):
        eps = denoise(x, c.t).float()
        x0 = (x - c.sqrt_one_minus * eps) / c.sqrt_abar
        if c.last:
            x = x0
            break
        coded = [b for b, p in enumerate(plans) if i < p.coded]
        z = torch.zeros_like(x)
        for b in coded:
            if codes is None:
                code = select(seeds[b], i, targets[b] - x0[b], plans[b].k, plans[b].atoms_at(i))
            else:
                code = codes[b][i]
            chosen[b].append(code)
            z[b] = combine(seeds[b], i, code, n, device)
        plain = c.a * x0 + c.b_plain * eps
        if coded:
            mask = torch.zeros((x.shape[0], 1), dtype=torch.bool, device=device)
            mask[coded] = True
            x = torch.where(mask, c.a * x0 + c.b_coded * eps + c.c_coded * z, plain)
        else:
            x = plain
    return Trajectory(x, chosen)


# --- Stable Diffusion (epsilon or v prediction) as the denoiser ------------------------------------------------
def check_schedule(pipe: Any, profile_name: str) -> None:
    """ModelError unless the model was trained on spec §10.3's schedule (the trajectory's coefficients)."""
    from ..core.errors import ModelError

    cfg = pipe.scheduler.config
    got = (cfg.get("beta_schedule"), float(cfg.get("beta_start")), float(cfg.get("beta_end")),
           int(cfg.get("num_train_timesteps")))
    want = ("scaled_linear", nc.BETA_START, nc.BETA_END, nc.TRAIN_STEPS)
    if got != want:
        raise ModelError(f"profile {profile_name}: noise mode needs a model trained on the schedule {want} "
                         f"(spec §10.3); its scheduler config says {got}")


def _prediction(pipe: Any) -> str:
    return str(pipe.scheduler.config.get("prediction_type", "epsilon"))


_GRAPHS: dict[tuple, Any] = {}


def _graphed_unet(unet: Any, inp_shape: tuple[int, ...], emb: Any) -> Callable[[Any, int], Any]:
    """The UNet call replayed as a CUDA graph (one capture per model, input shape and prompt shape; inputs copied
    into static buffers): a step of SD 1.5 takes a fifth of its eager time at batch 1, where kernel launches,
    not arithmetic, bound it."""
    import torch

    key = (id(unet), tuple(inp_shape), tuple(emb.shape), str(emb.dtype))
    if key not in _GRAPHS:
        sx = torch.zeros(inp_shape, dtype=unet.dtype, device=emb.device)
        st = torch.zeros((), dtype=torch.int64, device=emb.device)
        se = torch.zeros_like(emb)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):  # warm-up outside the graph (lazy initialisation, algorithm choice)
                unet(sx, st, encoder_hidden_states=se, return_dict=False)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = unet(sx, st, encoder_hidden_states=se, return_dict=False)[0]
        _GRAPHS[key] = (graph, sx, st, se, out)
    graph, sx, st, se, out = _GRAPHS[key]
    se.copy_(emb)

    def call(inp: Any, t: int) -> Any:
        sx.copy_(inp)
        st.fill_(t)
        graph.replay()
        return out

    return call


def sd_denoiser(pipe: Any, prompts: Sequence[str], guidance: float, negative: str, latent_shape: tuple[int, ...],
                dtype: Any, device: Any, graphs: bool = False) -> Denoiser:
    """The UNet as a Denoiser for a batch: prompts encoded once, classifier-free guidance when guidance > 1,
    v predictions turned into epsilon (eps = sqrt(abar) v + sqrt(1 - abar) x_t); graphs: the UNet call replayed
    as a CUDA graph."""
    import torch

    cfg = guidance > 1
    pe, ne = pipe.encode_prompt(list(prompts), device, 1, cfg, negative_prompt=[negative] * len(prompts) if cfg
                                else None)
    emb = torch.cat([ne, pe]) if cfg else pe
    v_pred = _prediction(pipe) == "v_prediction"
    abar = nc.alphas_cumprod()
    in_shape = (latent_shape[0] * (2 if cfg else 1), *latent_shape[1:])
    unet = _graphed_unet(pipe.unet, in_shape, emb) if graphs else \
        (lambda inp, t: pipe.unet(inp, t, encoder_hidden_states=emb, return_dict=False)[0])

    def denoise(x: Any, t: int) -> Any:
        lat = x.reshape(latent_shape).to(dtype)
        inp = torch.cat([lat, lat]) if cfg else lat
        out = unet(inp, t).float()
        if cfg:
            u, c = out.chunk(2)
            out = u + guidance * (c - u)
        out = out.reshape(x.shape[0], -1)
        if v_pred:
            out = math.sqrt(abar[t]) * out + math.sqrt(1 - abar[t]) * x
        return out

    return denoise


def encode_latents(pipe: Any, images: Sequence[Any], device: Any, dtype: Any) -> Any:
    """(B, n) float32: the autoencoder's mean latents of RGB images of one size, scaled as the UNet sees them."""
    import numpy as np
    import torch

    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) for im in images]) / 127.5 - 1.0
    px = torch.from_numpy(arr).permute(0, 3, 1, 2).to(device=device, dtype=dtype)
    lat = pipe.vae.encode(px).latent_dist.mean * pipe.vae.config.scaling_factor
    return lat.float().reshape(len(images), -1), tuple(lat.shape)


def decode_latents(pipe: Any, x: Any, latent_shape: tuple[int, ...], dtype: Any) -> Any:
    """NHWC uint8 numpy pixels of (B, n) latents (diffusers' own [-1, 1] to 8-bit arithmetic on the device)."""
    import torch

    lat = x.reshape(latent_shape).to(dtype) / pipe.vae.config.scaling_factor
    img = pipe.vae.decode(lat, return_dict=False)[0]
    img = (img.float() / 2 + 0.5).clamp(0, 1)
    return (img.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).cpu().numpy()


@dataclass(frozen=True)
class NoiseJob:
    """One image of a noise-mode batch: its caption, original size, seed and plan; the image to encode, or the
    step codes to decode."""

    caption: str
    width: int
    height: int
    seed: int
    plan: Plan
    image: Any = None
    codes: tuple[StepCode, ...] | None = None


def run_batch(profile: Any, jobs: Sequence[NoiseJob], *, device: str | None = None, model_path: str | None = None,
              dtype: str | None = None, vae_path: str | None = None, accel: Any = None, graphs: bool = False
              ) -> list[tuple[list[StepCode], Any]]:
    """Encode (jobs with images) or decode (jobs with codes) a batch of one generation size and one step count:
    each job's step codes and its reconstruction at the original size. The encoder's reconstruction is what the
    decoder makes of its file (with the same device, precision, batch and graphs setting). graphs: replay the
    UNet as a CUDA graph (CUDA devices only)."""
    import torch
    from PIL import Image

    from . import t2i
    from .loading import EAGER

    mc = profile.mode("noise")
    acc = accel or EAGER
    # compile mode reduce-overhead means CUDA graphs: this sampler captures the UNet step itself (seconds, where
    # torch.compile of the UNet takes minutes); any compile mode fuses the encoder's codebook scan
    graphs = graphs or acc.compile == "reduce-overhead"
    t2i_pipe, _, dev = t2i.load_pipelines(profile, device, dtype, model_path, vae_path,
                                          replace(acc, compile=None) if graphs else acc)
    if acc.compile and str(dev).startswith("cuda") and "project" not in _COMPILED:
        compiled_projection(True)
    check_schedule(t2i_pipe, profile.name)
    sizes = {profile.decode_size(j.width, j.height) for j in jobs}
    if len(sizes) != 1:
        raise ValueError("run_batch takes jobs of one generation size")
    (gw, gh), = sizes
    encoding = jobs[0].image is not None
    if any((j.image is not None) != encoding for j in jobs):
        raise ValueError("run_batch takes a batch to encode or a batch to decode, not both")
    wdtype = t2i_pipe.unet.dtype
    prompts = [mc.prompt.format(caption=j.caption).strip(" ,") for j in jobs]
    with torch.inference_mode():
        if encoding:
            imgs = [j.image.convert("RGB").resize((gw, gh), Image.Resampling.LANCZOS) for j in jobs]
            targets, shape = encode_latents(t2i_pipe, imgs, dev, t2i_pipe.vae.dtype)
        else:
            f = t2i_pipe.vae_scale_factor
            shape = (len(jobs), t2i_pipe.unet.config.in_channels, gh // f, gw // f)
            targets = None
        n = math.prod(shape[1:])
        den = sd_denoiser(t2i_pipe, prompts, mc.guidance_scale, mc.negative_prompt, shape, wdtype, dev,
                          graphs=graphs and str(dev).startswith("cuda"))
        traj = sample(den, [j.seed for j in jobs], [j.plan for j in jobs], n, dev, targets=targets,
                      codes=None if encoding else [list(j.codes or ()) for j in jobs])
        pixels = decode_latents(t2i_pipe, traj.x0, shape, t2i_pipe.vae.dtype)
    return [(codes, t2i._fit(Image.fromarray(p), (j.width, j.height)))
            for codes, p, j in zip(traj.codes, pixels, jobs, strict=True)]
