"""Noise mode (spec §10): the codebook generator bit for bit, the index coding, the payload, rate control, and
tiny-model round trips where the decoder reproduces the encoder's own reconstruction."""

from __future__ import annotations

import hashlib
import itertools
import math
import random

import numpy as np
import pytest

from cmcodec.core import bitstream, noisecode
from cmcodec.core.bitstream import Section
from cmcodec.core.errors import FormatError, UnknownSectionError
from cmcodec.core.noisecode import Plan, StepCode

# Random123's published known-answer vectors of Philox4x32-10 (its tests/kat_vectors): counter, key, output
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]
# spec §10.2's reference values: float32 bit patterns
ATOM_5_STEP_3_SEED_12345 = ["bfa0e535", "3eca304d", "bea6ddd4", "bf24e95c", "3fa3c5e1", "bf5c1395", "bff405cb",
                            "3f47effc"]
INITIAL_SEED_7 = ["3fd87823", "bd69a27d", "3f2cc943", "3ffd267d", "bf9a312e", "3f1b022c", "bfaf1acc", "3ee6b6f0"]


def _bits(a: np.ndarray) -> list[str]:
    return [f"{x:08x}" for x in np.asarray(a, dtype=np.float32).view(np.uint32)]


@pytest.mark.parametrize("ctr,key,out", KAT)
def test_philox_known_answers_numpy(ctr, key, out) -> None:
    got = noisecode.philox4x32_10(np.array([ctr], dtype=np.uint64), key)[0]
    assert tuple(int(x) for x in got) == out


@pytest.mark.parametrize("ctr,key,out", KAT)
def test_philox_known_answers_torch_int64(ctr, key, out) -> None:
    import torch

    from cmcodec.models import noise

    got = noise.philox(*(torch.tensor(c, dtype=torch.int64) for c in ctr), key)
    assert tuple(int(x) for x in got) == out


def test_quantile_table_is_the_specs() -> None:
    q = noisecode.quantile_table()
    assert hashlib.sha256(q.astype("<f4").tobytes()).hexdigest() == noisecode.QUANTILE_SHA256
    assert np.array_equal(q, -q[::-1]) and np.all(np.diff(q) > 0)
    assert abs(float(q.astype(np.float64).var()) - 1) < 1e-4


def test_atoms_match_the_specs_reference_values() -> None:
    assert _bits(noisecode.atoms(12345, 3, np.array([5]), 8)[0]) == ATOM_5_STEP_3_SEED_12345
    assert _bits(noisecode.initial_noise(7, 8)) == INITIAL_SEED_7


def test_torch_int64_atoms_are_bit_identical_to_numpy() -> None:
    from cmcodec.models import noise

    idx = np.array([0, 5, 777, 16383])
    want = noisecode.atoms(99, 17, idx, 1001)  # n not a multiple of 8: the last block is cut
    got = noise.gaussian_int64(99, 17, idx, noisecode.STREAM_ATOMS, 1001, "cpu").numpy()
    assert np.array_equal(want.view(np.uint32), got.view(np.uint32))
    assert _bits(noise.gaussian_int64(12345, 3, [5], 1, 8, "cpu")[0].numpy()) == ATOM_5_STEP_3_SEED_12345


def test_rank_is_a_bijection_onto_the_binomial_range() -> None:
    for k, m in [(8, 3), (9, 1), (6, 6), (10, 4)]:
        ranks = sorted(noisecode.rank(c) for c in itertools.combinations(range(k), m))
        assert ranks == list(range(math.comb(k, m)))
        for c in itertools.combinations(range(k), m):
            assert noisecode.unrank(noisecode.rank(c), k, m) == list(c)
    big = sorted(random.Random(1).sample(range(16384), 100))
    assert noisecode.unrank(noisecode.rank(big), 16384, 100) == big
    with pytest.raises(FormatError, match="rank"):
        noisecode.unrank(math.comb(8, 3), 8, 3)


def _codes(plan: Plan, rng: random.Random) -> list[StepCode]:
    out = []
    for i in range(plan.coded):
        m = plan.atoms_at(i)
        out.append(StepCode(tuple(sorted(rng.sample(range(plan.k), m))), tuple(rng.choice((1, -1)) for _ in range(m))))
    return out


@pytest.mark.parametrize("plan", [Plan(30), Plan(30, 29, 14, 22, 15), Plan(4, 3, 8, 63, 2), Plan(1), Plan(5, 1, 1, 1)])
def test_payload_round_trip_and_size(plan: Plan) -> None:
    codes = _codes(plan, random.Random(0))
    data = noisecode.pack(plan, codes)
    assert len(data) == plan.nbytes()
    assert noisecode.unpack(data) == (plan, codes)


def test_payload_prefix_keeps_the_first_steps() -> None:
    plan = Plan(10, 6, 8, 3, 2)
    codes = _codes(plan, random.Random(2))
    data = noisecode.pack(plan, codes)
    for k in range(7):
        p, c = noisecode.unpack(data, steps_available=k)
        assert c == codes[:k] and p.coded == k
        assert [p.atoms_at(i) for i in range(k)] == [plan.atoms_at(i) for i in range(k)]


def test_payload_rejects_what_the_spec_forbids() -> None:
    plan = Plan(4, 3, 4, 2)
    data = noisecode.pack(plan, _codes(plan, random.Random(3)))
    with pytest.raises(FormatError, match="bytes"):
        noisecode.unpack(data + b"\0")
    with pytest.raises(FormatError):
        noisecode.unpack(data[:-1])
    w = bitstream.BitWriter()
    w.ue(2), w.ue(3), w.u(4, 5), w.ue(0), w.ue(0)  # T = 3 with 3 coded steps: the last step is never coded
    with pytest.raises(FormatError, match="coded steps"):
        noisecode.unpack(w.to_bytes())
    bits = plan.bits()
    if bits % 8:  # a one in the padding
        bad = bytearray(data)
        bad[-1] |= 1
        with pytest.raises(FormatError, match="padding"):
            noisecode.unpack(bytes(bad))
    # a rank at C(K, M) or above: K = 4, M = 3 has 4 sets and a 2-bit rank field, so none is out of range;
    # K = 8, M = 3 has 56 sets in 6 bits: rank 63 is invalid
    p = Plan(2, 1, 3, 3)
    w = bitstream.BitWriter()
    w.ue(1), w.ue(1), w.u(3, 5), w.ue(2), w.ue(0), w.u(63, 6), w.u(7, 3)
    with pytest.raises(FormatError, match="rank"):
        noisecode.unpack(w.to_bytes())
    assert p.nbytes() == len(w.to_bytes())


@pytest.mark.parametrize("budget", [1, 3, 5, 12, 19, 20, 21, 33, 40, 100, 257, 983, 5000, 30000, 200000])
def test_fit_plan_fills_the_budget(budget: int) -> None:
    floor = Plan(30).nbytes()
    p = noisecode.fit_plan(30, 14, budget)
    assert p.nbytes() <= max(budget, floor)
    p.check()
    if budget >= floor + noisecode.FILL_MARGIN and p.atoms < noisecode.MAX_ATOMS:
        assert p.nbytes() - floor >= 0.9 * (budget - floor), p


def test_noise_mode_container() -> None:
    plan = Plan(4, 3, 8, 2, 1)
    payload = noisecode.pack(plan, _codes(plan, random.Random(4)))
    data = bitstream.pack(mode="noise", width=96, height=64, profile_id=3, seed=9,
                          sections=[Section(0, 3, b""), Section(3, 0, payload)])
    h = bitstream.read_header(data)
    assert (h.mode, h.seed, [s.name for s in h.sections]) == ("noise", 9, ["caption", "noise"])
    assert h.section("noise").required
    # the noise section is the mode's own: never an extra section of another mode
    with pytest.raises(ValueError, match="belongs to a mode"):
        bitstream.pack(mode="text", width=8, height=8, profile_id=3, sections=[Section(0, 3, b"")],
                       extra=[Section(3, 0, payload)])


def test_a_reader_without_the_noise_section_refuses_it(monkeypatch) -> None:
    plan = Plan(4, 3, 8, 2)
    data = bitstream.pack(mode="noise", width=96, height=64, profile_id=3, seed=1,
                          sections=[Section(0, 2, b"a cat"), Section(3, 0, noisecode.pack(plan, _codes(plan, random.Random(5))))])
    monkeypatch.setattr(bitstream.ids, "SECTION_TYPES", {0: "caption", 1: "pixel_map", 2: "image_ref"})
    monkeypatch.setattr(bitstream.ids, "SECTION_MODES", {})
    with pytest.raises(UnknownSectionError, match="unknown required section type 3"):
        bitstream.read_header(data)


# --- tiny-model round trips (tests/tiny_models.py weights, CPU, float32) -----------------------------------------
CAPTION = "two parrots"
TINY = {"noise_steps": 4, "noise_log2_k": 8}  # T = 4, K = 256: the whole trajectory in seconds on a CPU


def _image():
    from conftest import ROOT
    from PIL import Image

    return Image.open(ROOT / "fixtures/images/parrots_192x128.png").convert("RGB").resize((96, 64))


def _encode(tiny_sd, **kw):
    from cmcodec import codec

    opts = codec.EncodeOptions(model_path=str(tiny_sd), device="cpu", **TINY)
    return codec.encode_result(_image(), mode="noise", caption=CAPTION, profile="sd15", seed=5, options=opts, **kw)


def _decode(tiny_sd, data: bytes, **kw) -> np.ndarray:
    from cmcodec import codec

    return np.asarray(codec.decode(data, codec.DecodeOptions(model_path=str(tiny_sd), device="cpu", **kw)))


def _reconstruct(tiny_sd, plan: Plan):
    """The encoder's own trajectory for a plan: its codes and reconstruction."""
    from cmcodec.core.profiles import get_profile
    from cmcodec.models import noise

    (codes, img), = noise.run_batch(get_profile("sd15"), [noise.NoiseJob(CAPTION, 96, 64, 5, plan, image=_image())],
                                    device="cpu", model_path=str(tiny_sd))
    return codes, np.asarray(img)


# last 3x3 pixels of the blue channel of the tiny-model decode of the 120-byte file
NOISE_SLICE: list[int] = [95, 108, 127, 144, 114, 117, 126, 123, 126]


def test_tiny_noise_round_trip_fills_the_budget_and_decodes_to_the_encoders_reconstruction(tiny_sd) -> None:
    from cmcodec import codec

    r = _encode(tiny_sd, max_bytes=120)
    least = codec.smallest_size(_image(), mode="noise", profile="sd15",
                                options=codec.EncodeOptions(**TINY))
    assert least + 0.9 * (120 - least) <= len(r.data) <= 120
    assert r.header.mode == "noise" and r.caption == CAPTION and r.header.seed == 5
    plan, codes = noisecode.unpack(r.header.section("noise").payload)
    assert plan.coded == 3 and plan.steps == 4
    got = _decode(tiny_sd, r.data)
    assert got.shape == (64, 96, 3)
    again_codes, recon = _reconstruct(tiny_sd, plan)
    assert again_codes == codes
    assert np.array_equal(got, recon)  # same file, same pixels on one install
    if NOISE_SLICE:
        assert np.abs(got[-3:, -3:, -1].flatten().astype(int) - np.array(NOISE_SLICE)).max() <= 2
    else:
        pytest.fail(f"pin NOISE_SLICE = {got[-3:, -3:, -1].flatten().tolist()}")


def test_tiny_noise_prefix_decode_is_the_shorter_files_decode(tiny_sd) -> None:
    r = _encode(tiny_sd, max_bytes=120)
    for k in (0, 1):
        plan, _ = noisecode.unpack(r.header.section("noise").payload, steps_available=k)
        assert np.array_equal(_decode(tiny_sd, r.data, steps_available=k), _reconstruct(tiny_sd, plan)[1])


# --- the benchmarks' own code paths, on tiny sizes ---------------------------------------------------------------
def _bench(name: str):
    import importlib
    import sys

    from conftest import ROOT

    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    return importlib.import_module(name)


def test_gaussian_benchmark_runs_the_products_sampler() -> None:
    bench = _bench("noise_gaussian")
    rows = bench.run(dims=64, log2k=6, steps=4, images=2, rates=(0.5, 2.0), s=1.0, device="cpu")
    for r in rows:
        assert 0 < r["bits_per_dim"] <= r["target_bits_per_dim"]
        assert r["realism_bound"] >= r["shannon_D"] > 0 and math.isfinite(r["mse"]) and r["mse"] > 0
    assert rows[1]["mse"] < rows[0]["mse"]  # more bits, less distortion
    assert "gap (dB)" in bench.table(rows)


def test_speed_benchmark_paths_on_a_tiny_model(tiny_sd, tmp_path) -> None:
    bench = _bench("noise_speed")
    check = bench.codebook_check("cpu", n_big=64, atoms=16, compiled=False)
    assert all(v for k, v in check.items() if k.startswith(("atoms", "initial", "spec_reference_values_match")))
    rows: list[dict] = []
    bench.speed("cpu", tmp_path, [0.002], [1, 2], ["eager"], 1, rows.append, model=tiny_sd,
                shape={"noise_steps": 3, "noise_log2_k": 6})
    # T = 3 and K = 64 code at most 2 steps of 62 atoms: the plan saturates below the 98-byte budget
    assert [r["batch"] for r in rows] == [1, 2] and rows[0]["file_bytes"] == rows[1]["file_bytes"] <= 98
    assert rows[0]["plan"]["coded"] == 2 and rows[0]["plan"]["atoms"] == 62


# --- rd-curve and evaluate in noise mode (their own code paths, a tiny model, T = 4 and K = 256) ----------------
def _cli(*args: str):
    from click.testing import CliRunner

    from cmcodec.cli import main

    return CliRunner().invoke(main, list(args))


def test_rd_curve_and_evaluate_run_the_noise_mode_keyed_by_its_shape(tiny_sd, tmp_path) -> None:
    """rd-curve --modes noise and evaluate --modes noise on the sd21-base row (a tiny model in its place): the
    files have the T and K asked for, and a rerun reuses them only under the same T and K."""
    import json
    import shutil

    from conftest import HOUSE, PARROTS

    from cmcodec.core.bitstream import read_header

    src = tmp_path / "imgs"
    src.mkdir()
    shutil.copy(HOUSE, src / "SCI_house.png")  # 96 x 64
    caps = tmp_path / "caps.csv"
    caps.write_text(f"name,text\nSCI_house.png,{CAPTION}\n", encoding="utf-8")
    tiny = ["--model-path", f"sd21-base={tiny_sd}", "--noise-steps", "4", "--noise-log2k", "8"]
    rd_args = ["rd-curve", str(src), "-o", str(tmp_path / "rd"), "--codecs", "none", "--profiles", "sd21-base",
               "--modes", "noise", "--metrics", "psnr", "--targets", "0.08,0.16", "--captions", str(caps),
               "--report-targets", "0.16", *tiny]
    r = _cli(*rd_args)
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "rd" / "results.json").read_text())
    curve = res["curves"]["cmc:sd21-base:noise"]
    assert curve["images"] == 1 and len(curve["bpp"]) == 2 and curve["bpp"][0] < curve["bpp"][1] <= 0.16
    assert res["settings"]["noise"] == {"noise_steps": 4, "noise_log2_k": 8}
    (coded,) = (tmp_path / "rd").rglob("*.cmc")  # report.html's crop, coded with the run's T and K
    plan, _ = noisecode.unpack(read_header(coded.read_bytes()).section("noise").payload)
    assert (plan.steps, plan.log2_k) == (4, 8) and plan.coded == 3
    assert "0 units computed" in _cli(*rd_args).output  # same T and K: reused
    assert "1 units computed" in _cli(*rd_args[:-4], "--noise-steps", "3", "--noise-log2k", "8").output

    # evaluate codes at the profile's noise_bpp (0.02): 61 bytes of the 192 x 128 parrots, atoms on every step
    gt = tmp_path / "gt"
    gt.mkdir()
    shutil.copy(PARROTS, gt / "NSI_parrots.png")
    caps_cmc = tmp_path / "bench.csv"  # CMC-Bench's caption format
    caps_cmc.write_text(f",name,text\n0,NSI_parrots.png,{CAPTION}\n", encoding="utf-8")
    ev_args = ["evaluate", str(gt), "-o", str(tmp_path / "ev"), "--captions", str(caps_cmc), "--profile",
               "sd21-base", "--modes", "noise", "--fr", "psnr", "--nr", "piqe", "--device", "cpu", *tiny]
    r = _cli(*ev_args)
    assert r.exit_code == 0, r.output
    run_dir = tmp_path / "ev" / "bench__sd21-base"
    data = (run_dir / "noise" / "NSI_parrots.cmc").read_bytes()
    plan, _ = noisecode.unpack(read_header(data).section("noise").payload)
    assert (plan.steps, plan.log2_k) == (4, 8) and plan.coded == 3 and len(data) <= 61
    scores = json.loads((run_dir / "scores.json").read_text())
    assert scores["modes"]["noise"]["bpp"] == pytest.approx(len(data) * 8 / (192 * 128))
    assert "redone" not in _cli(*ev_args).output  # same T and K: the stored file and decode are kept
    r = _cli(*ev_args[:-4], "--noise-steps", "3", "--noise-log2k", "8")
    assert "NSI_parrots: redone (made by other settings)" in r.output
