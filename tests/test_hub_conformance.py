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

from cmcodec.models.i2t import CAPTIONERS
from cmcodec.models.profiles import PROFILES

MANIFESTS = manifests()
# Registered models whose manifest / tiny family is still to come (each one is a gap in conformance, listed
# here so the gap is visible and the coverage test below keeps failing for any row not listed).
# stabilityai/sdxl-turbo, SG161222/RealVisXL_V4.0, stable-diffusion-v1-5/stable-diffusion-v1-5 and
# Salesforce/blip2-opt-2.7b have manifests and tiny families (their offline caches load in-process), but their
# command-line runs are not yet verified: they stay listed until they are.
PENDING = {"stabilityai/sdxl-turbo", "SG161222/RealVisXL_V4.0", "stable-diffusion-v1-5/stable-diffusion-v1-5",
           "Salesforce/blip2-opt-2.7b", "florence-community/Florence-2-large", "Qwen/Qwen2.5-VL-3B-Instruct",
           "llava-hf/llava-1.5-7b-hf", "llava-hf/llava-v1.6-mistral-7b-hf", "Salesforce/instructblip-vicuna-7b",
           "HuggingFaceTB/SmolVLM2-2.2B-Instruct", "OpenGVLab/InternVL3-1B-hf",
           # the decoder line-up's rows: no manifest written yet (their pipeline families have tiny-model tests in
           # tests/test_lineup.py, through folders, not yet through an HF cache)
           "Efficient-Large-Model/Sana_Sprint_1.6B_1024px_diffusers", "black-forest-labs/FLUX.1-schnell",
           "dreamlike-art/dreamlike-photoreal-2.0", "playgroundai/playground-v2-1024px-aesthetic",
           "playgroundai/playground-v2.5-1024px-aesthetic", "segmind/SSD-1B",
           "stabilityai/stable-diffusion-3.5-large-turbo", "stabilityai/stable-diffusion-x4-upscaler",
           "stabilityai/stable-diffusion-xl-base-1.0", "timbrooks/instruct-pix2pix"}


def _decoder_models(p) -> list[str]:
    return [m for m in (p.model, p.vae) if m]


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
        for model, rev in ((p.model, p.revision), (p.vae, p.vae_revision)):
            if model in MANIFESTS and MANIFESTS[model]["commit"]:
                assert rev == MANIFESTS[model]["commit"], f"{p.name}: {model} pinned at {rev}"
    for c in CAPTIONERS.values():
        if c.model in MANIFESTS and MANIFESTS[c.model]["commit"]:
            assert c.revision == MANIFESTS[c.model]["commit"], f"{c.name}: {c.model} pinned at {c.revision}"


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
        build_cache(home, m, tiny_family(m["family"]))
    return home


def test_decode_every_profile_offline_from_the_cache(hub_home: Path, tmp_path: Path) -> None:
    src = tmp_path / "cmc"
    src.mkdir()
    for p in DECODERS:  # text-mode files need no captioner: the caption is given
        mode = "text" if "text" in p.modes else next(iter(p.modes))
        r = cli("encode", str(HOUSE), "-o", str(src / f"{p.name}.cmc"), "--mode", mode, "--profile", p.name,
                "--caption", "a red house", env=offline_env(hub_home))
        assert r.returncode == 0, r.stderr
    r = cli("decode", str(src), "-o", str(tmp_path / "png"), "--device", "cpu", env=offline_env(hub_home))
    assert r.returncode == 0, r.stderr
    for p in DECODERS:
        assert (tmp_path / "png" / f"{p.name}.png").is_file(), p.name


RUNNER = """
import json, sys
from click.testing import CliRunner
from cmcodec.cli import main
out = []
for args in json.loads(sys.argv[1]):
    r = CliRunner().invoke(main, args)
    out.append({"code": r.exit_code, "output": r.output})
print(json.dumps(out))
"""


def test_encode_with_every_captioner_offline_from_the_cache(hub_home: Path, tmp_path: Path) -> None:
    calls = [["encode", str(HOUSE), "-o", str(tmp_path / f"{c.name}.cmc"), "--mode", "text", "--i2t", c.name,
              "--device", "cpu"] for c in CAPS]
    # one process runs the real command line once per captioner (imports paid once)
    r = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(calls)], capture_output=True, text=True,
                       env=offline_env(hub_home), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    for c, res in zip(CAPS, json.loads(r.stdout.splitlines()[-1]), strict=True):
        assert res["code"] == 0, f"{c.name}: {res['output']}"
        assert (tmp_path / f"{c.name}.cmc").is_file()


def test_absent_models_fail_within_seconds_with_the_clear_message(tmp_path: Path) -> None:
    env = offline_env(tmp_path / "empty")
    cmc = tmp_path / "x.cmc"
    assert cli("encode", str(HOUSE), "-o", str(cmc), "--caption", "a house", env=env).returncode == 0
    for args in (("decode", str(cmc), "-o", str(tmp_path / "x.png")),
                 ("encode", str(HOUSE), "-o", str(tmp_path / "y.cmc"), "--mode", "text")):
        t0 = time.monotonic()
        r = cli(*args, env=env)
        took = time.monotonic() - t0
        assert r.returncode != 0 and r.stderr.strip().count("\n") == 0, r.stderr
        assert "not in the local Hugging Face cache" in r.stderr and "HF_HOME" in r.stderr, r.stderr
        assert took < 60, f"{args[0]} took {took:.0f} s to fail"  # process start and imports included


def test_a_repo_without_safetensors_is_refused_in_one_line_naming_it(tmp_path: Path, tiny_family) -> None:
    """blip-base's main branch holds only pytorch_model.bin and tf_model.h5: a cache of it is refused."""
    m = dict(MANIFESTS["Salesforce/blip-image-captioning-base"])
    m["files"] = m["main_files"]
    build_cache(tmp_path, m, tiny_family("blip"))
    r = cli("encode", str(HOUSE), "-o", str(tmp_path / "b.cmc"), "--mode", "text", "--i2t", "blip-base",
            env=offline_env(tmp_path))
    assert r.returncode != 0 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "Salesforce/blip-image-captioning-base" in r.stderr and "no safetensors" in r.stderr, r.stderr
