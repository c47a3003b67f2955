"""Conformance with the real hub repos: every registered decoder profile and captioner loads offline from a
Hugging Face cache laid out exactly as an online run leaves it (fixtures/hub manifests, tests/hub_cache.py),
through the real command line, and fails within seconds, in one line, where it must.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import HOUSE

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from hub_cache import build_cache, manifests
from hub_families import FAMILIES

from cmcodec import codec
from cmcodec.core.profiles import PROFILES
from cmcodec.models.i2t import CAPTIONERS

MANIFESTS = manifests()
# Registered models whose manifest / tiny family is still to come (each one is a gap in conformance, listed
# here so the gap is visible and the coverage test below keeps failing for any row not listed).
# Every registered decoder profile and captioner is covered now.
PENDING: set[str] = set()


def _decoder_models(p) -> list[str]:
    """Every repo a profile row loads: its pipeline, and the autoencoder and ControlNet repos beside it."""
    return [m for m in (p.model, p.vae, p.controlnet) if m]


DECODERS = [p for p in PROFILES if p.model and not set(_decoder_models(p)) & PENDING]
CAPS = [c for c in CAPTIONERS.values() if c.model and c.model not in PENDING]


def test_every_registered_model_has_a_manifest_and_a_family() -> None:
    registered = {m for p in PROFILES for m in _decoder_models(p)} | {c.model for c in CAPTIONERS.values() if c.model}
    missing = sorted(registered - set(MANIFESTS) - PENDING)
    assert not PENDING - registered, f"rows gone from PENDING's list: {sorted(PENDING - registered)}"
    assert not missing, f"add fixtures/hub/<org>--<name>.json for {missing} (see fixtures/hub/README.md)"
    for repo, m in MANIFESTS.items():
        assert m["family"] in FAMILIES, f"{repo}: no tiny-model factory for family {m['family']!r}"
        assert m["library"] in ("diffusers", "transformers") and m["files"] and m["source"], repo
        assert m["commit"] is None or (len(m["commit"]) == 40 and int(m["commit"], 16) >= 0), repo


def test_rows_pin_the_commit_their_manifest_describes() -> None:
    for p in PROFILES:
        for model, rev in ((p.model, p.revision), (p.vae, p.vae_revision), (p.controlnet, p.controlnet_revision)):
            if model in MANIFESTS and MANIFESTS[model]["commit"]:
                assert rev == MANIFESTS[model]["commit"], f"{p.name}: {model} pinned at {rev}"
    for c in CAPTIONERS.values():
        if c.model in MANIFESTS and MANIFESTS[c.model]["commit"]:
            assert c.revision == MANIFESTS[c.model]["commit"], f"{c.name}: {c.model} pinned at {c.revision}"


def test_rows_name_the_licence_their_manifests_record() -> None:
    # where each licence was read (the stored page, or why none shows it) is in the manifest, not the row
    for p in PROFILES:
        for model in (p.model, p.vae, p.controlnet):
            lic = MANIFESTS.get(model, {}).get("license")
            if lic:
                assert lic["name"] in p.license and lic["source"], f"{p.name}: {model} is {lic['name']!r}"
    assert all("license" in MANIFESTS[m] for p in PROFILES for m in _decoder_models(p) if m in MANIFESTS)
    for c in CAPTIONERS.values():
        lic = MANIFESTS.get(c.model, {}).get("license")
        if lic:
            assert lic["name"] == c.license and lic["source"], f"{c.name}: {c.model} is {lic['name']!r}"


def test_rows_ask_for_the_fp16_variant_their_repo_publishes() -> None:
    """A row whose repo publishes fp16 weights of its denoiser asks for them in float16 (half the download); one
    whose repo has none does not (a download would ask for files the repo lacks)."""
    for p in PROFILES:
        if p.model in MANIFESTS:
            files = MANIFESTS[p.model]["files"]
            fp16 = any(f.startswith(("unet/", "transformer/")) and (".fp16." in f or ".fp16-" in f) for f in files)
            assert (p.variant == "fp16") == fp16, f"{p.name}: variant {p.variant!r}, repo publishes fp16: {fp16}"


@pytest.fixture(scope="session")
def tiny_family(tmp_path_factory: pytest.TempPathFactory):
    """family -> tiny folder in that family's real layout, each built once per session."""
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = FAMILIES[family](tmp_path_factory.mktemp("family") / family)
        return built[family]

    return get


def offline_env(hf_home: Path) -> dict[str, str]:
    """The environment of a user on an offline machine whose cache is hf_home."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "CMCODEC_MODEL_DIR",
                        "CMCODEC_REVISIONS", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    return {**env, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cmcodec.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.fixture(scope="session")
def hub_home(tmp_path_factory: pytest.TempPathFactory, tiny_family) -> Path:
    """An HF_HOME holding every manifest's repo, as online runs at the rows' revisions left it."""
    home = tmp_path_factory.mktemp("hf_home")
    for m in MANIFESTS.values():
        # a run at a commit of another branch (a PR's safetensors conversion) leaves no refs/main
        build_cache(home, m, tiny_family(m["family"]), revision_ref=m.get("branch", "main") == "main")
    return home


# The command line in one process for all the decoder rows (imports paid once). Every field that decides what
# loads stays as shipped (hub ids, revisions, variant, family, scheduler, load_kwargs, dtype); only the work
# after loading is shrunk, as tests/test_lineup.py's small rows: a 64 px long side (128 for the x4 upscaler) and
# 2 steps where a row takes more (the flow rows' image-mode schedules kept). What loads from the cache is this
# test's subject; the pixels of each family are test_lineup's.
DECODE_RUNNER = """
import dataclasses, json, sys
from click.testing import CliRunner
from cmcodec.cli import main
from cmcodec.core import profiles

for row in profiles.PROFILES:
    modes = {m: dataclasses.replace(mc, steps=min(mc.steps, 2) if m == "text" or mc.steps > 5 else mc.steps)
             for m, mc in row.modes.items()}
    small = dataclasses.replace(row, long_side=128 if row.family == "upscale-x4" else 64, modes=modes)
    profiles.PROFILES_BY_ID[row.id] = profiles.PROFILES_BY_NAME[row.name] = small
out = []
for args in json.loads(sys.argv[1]):
    r = CliRunner().invoke(main, args)
    out.append({"code": r.exit_code, "output": r.output})
print(json.dumps(out))
"""


def test_decode_every_profile_offline_from_the_cache(hub_home: Path, tmp_path: Path) -> None:
    src, png = tmp_path / "cmc", tmp_path / "png"
    src.mkdir()
    calls = []
    for p in DECODERS:
        mode = "text" if "text" in p.modes else next(iter(p.modes))
        # a given caption spares the captioner; a mode whose decoder reads none refuses one
        caption = ["--caption", "a red house"] if codec.needs_captioner(mode, p.name) else []
        calls.append(["encode", str(HOUSE), "-o", str(src / f"{p.name}.cmc"), "--profile", p.name, "--mode", mode,
                      *caption])
    calls.append(["decode", str(src), "-o", str(png), "--device", "cpu"])
    r = subprocess.run([sys.executable, "-c", DECODE_RUNNER, json.dumps(calls)], capture_output=True, text=True,
                       env=offline_env(hub_home), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads(r.stdout.splitlines()[-1])
    for args, res in zip(calls, results, strict=True):
        assert res["code"] == 0, f"{' '.join(args[:2])}: {res['output'][-3000:]}"
    assert {p.name for p in DECODERS} == {f.name.removesuffix(".decoded.png") for f in png.glob("*.decoded.png")}


RUNNER = """
import json, sys
from click.testing import CliRunner
from cmcodec.cli import main
from cmcodec.models import i2t
out = []
for args in json.loads(sys.argv[1]):
    r = CliRunner().invoke(main, args)
    out.append({"code": r.exit_code, "output": r.output})
tokenizers = {row.name: {k: type(getattr(proc, k)).__name__ for k in ("tokenizer", "qformer_tokenizer") if hasattr(proc, k)}
              for proc, _, row, _ in i2t._CACHE.values()}
print(json.dumps({"runs": out, "tokenizers": tokenizers}))
"""


def test_encode_with_every_captioner_offline_from_the_cache(hub_home: Path, tmp_path: Path) -> None:
    calls = [["encode", str(HOUSE), "-o", str(tmp_path / f"{c.name}.cmc"), "--mode", "text", "--i2t", c.name,
              "--device", "cpu"] for c in CAPS]
    # one process runs the real command line once per captioner (imports paid once)
    r = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(calls)], capture_output=True, text=True,
                       env=offline_env(hub_home), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.splitlines()[-1])
    for c, res in zip(CAPS, got["runs"], strict=True):
        assert res["code"] == 0, f"{c.name}: {res['output']}"
        assert (tmp_path / f"{c.name}.cmc").is_file()
        assert ", caption '" in res["output"], f"{c.name}: {res['output']}"  # a caption, not an empty one
    # InstructBLIP's Q-Former reads its own BERT tokenizer (qformer_tokenizer/), not the LM's from the repo root
    assert got["tokenizers"]["instructblip-vicuna-7b"]["qformer_tokenizer"] == "BertTokenizer", got["tokenizers"]


def test_absent_models_fail_within_seconds_with_the_clear_message(tmp_path: Path) -> None:
    env = offline_env(tmp_path / "empty")
    cmc = tmp_path / "x.cmc"
    assert cli("encode", str(HOUSE), "-o", str(cmc), "--caption", "a house", env=env).returncode == 0
    # "within seconds" against what this machine needs right now to start a process that imports the model
    # libraries (a loaded CI runner is slow at both): a hub timeout or retry loop would add tens of seconds
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", "import torch, diffusers, transformers"], check=True, env=env, timeout=600)
    start = time.monotonic() - t0
    for args in (("decode", str(cmc), "-o", str(tmp_path / "x.png")),
                 ("encode", str(HOUSE), "-o", str(tmp_path / "y.cmc"), "--mode", "text")):
        t0 = time.monotonic()
        r = cli(*args, env=env)
        took = time.monotonic() - t0
        assert r.returncode != 0 and r.stderr.strip().count("\n") == 0, r.stderr
        assert "not in the local Hugging Face cache" in r.stderr and "HF_HOME" in r.stderr, r.stderr
        assert took < 2 * start + 20, f"{args[0]} took {took:.0f} s to fail ({start:.0f} s to start and import)"


def test_a_controlnet_branch_without_safetensors_is_refused_in_one_line_naming_it(tmp_path: Path,
                                                                                  tiny_family) -> None:
    """lllyasviel/control_v11f1e_sd15_tile's main branch holds only a pickled diffusion_pytorch_model.bin (the row
    pins its safetensors conversion instead): a cache of main, with the ControlNet pinned locally to main, is
    refused before anything loads."""
    sd15 = MANIFESTS["stable-diffusion-v1-5/stable-diffusion-v1-5"]
    build_cache(tmp_path, sd15, tiny_family(sd15["family"]))
    cn = MANIFESTS["lllyasviel/control_v11f1e_sd15_tile"]
    build_cache(tmp_path, {**cn, "files": cn["main_files"], "commit": None}, tiny_family(cn["family"]))
    pins = tmp_path / "pins.json"
    pins.write_text(json.dumps({cn["repo"]: "main"}))
    cmc = tmp_path / "t.cmc"
    env = offline_env(tmp_path)
    assert cli("encode", str(HOUSE), "-o", str(cmc), "--mode", "image", "--profile", "sd15-tile",
               env=env).returncode == 0
    r = cli("decode", str(cmc), "-o", str(tmp_path / "t.png"), "--device", "cpu",
            env={**env, "CMCODEC_REVISIONS": str(pins)})
    assert r.returncode != 0 and r.stderr.strip().count("\n") == 0, r.stderr
    assert cn["repo"] in r.stderr and "no safetensors" in r.stderr and "revision main" in r.stderr, r.stderr


def test_a_repo_without_safetensors_is_refused_in_one_line_naming_it(tmp_path: Path, tiny_family) -> None:
    """blip-base's main branch holds only pytorch_model.bin and tf_model.h5: a cache of it is refused."""
    m = dict(MANIFESTS["Salesforce/blip-image-captioning-base"])
    m["files"] = m["main_files"]
    build_cache(tmp_path, m, tiny_family("blip"))
    r = cli("encode", str(HOUSE), "-o", str(tmp_path / "b.cmc"), "--mode", "text", "--i2t", "blip-base",
            env=offline_env(tmp_path))
    assert r.returncode != 0 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "Salesforce/blip-image-captioning-base" in r.stderr and "no safetensors" in r.stderr, r.stderr


def test_a_model_repo_without_the_fp16_variant_loads_its_full_weights_from_the_hub(tmp_path: Path,
                                                                                   tiny_family) -> None:
    """sd15-tile asks for SD 1.5's fp16 variant, which its ControlNet repo does not publish. Downloading (the
    copy's contents unknown beforehand), diffusers' single-model loader answers the variant file's absence with
    an OSError, not the pipelines' ValueError: the model must load again without the variant."""
    import diffusers
    import torch

    from cmcodec.models import t2i
    from cmcodec.models.loading import Source

    cn = MANIFESTS["lllyasviel/control_v11f1e_sd15_tile"]
    build_cache(tmp_path, cn, tiny_family(cn["family"]), revision_ref=False)
    # a hub source (not local-only) served from that cache (this process is offline): a file the repo lacks
    # fails as on the hub
    src = Source(cn["repo"], cn["commit"])
    assert t2i._has_variant(src, "fp16")  # unknown before the download: the variant is asked for
    net = t2i._from_pretrained(diffusers.ControlNetModel, src, {"dtype": torch.float16,
                                                               "cache_dir": str(tmp_path / "hub")}, "fp16")
    assert net.dtype == torch.float16  # the full-precision weights, converted
