"""Shared fixtures: offline hub, tiny random-weight models saved and reloaded like real folders."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
GOLDEN = FIXTURES / "golden"
PARROTS = FIXTURES / "images/parrots_192x128.png"
HOUSE = FIXTURES / "images/house_96x64.png"


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny Stable-Diffusion pipeline (random weights, our tokenizer files)."""
    pytest.importorskip("diffusers")
    from tiny_models import make_tiny_sd

    return make_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def tiny_blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny BLIP captioner (random weights, our tokenizer files)."""
    pytest.importorskip("transformers")
    from tiny_models import make_tiny_blip

    return make_tiny_blip(tmp_path_factory.mktemp("models") / "tiny-blip")


@pytest.fixture(scope="session")
def tiny_qwen2vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny Qwen2-VL-class chat captioner (random weights, our tokenizer and chat template)."""
    pytest.importorskip("transformers")
    from tiny_models import make_tiny_qwen2vl

    return make_tiny_qwen2vl(tmp_path_factory.mktemp("models") / "tiny-qwen2vl")


@pytest.fixture(scope="session")
def tiny_family(tmp_path_factory: pytest.TempPathFactory):
    """Folder of a tiny pipeline of one decoder family (tiny_models.TINY_FAMILIES), built once per session."""
    pytest.importorskip("diffusers")
    from tiny_models import TINY_FAMILIES

    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = TINY_FAMILIES[name](tmp_path_factory.mktemp("models") / f"tiny-{name}")
        return built[name]

    return get


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip slow tests unless asked for (every other test runs on CPU with tiny random weights)."""
    slow = os.environ.get("CMCODEC_SLOW") == "1"
    for item in items:
        if "slow" in item.keywords and not slow:
            item.add_marker(pytest.mark.skip(reason="slow: set CMCODEC_SLOW=1"))
