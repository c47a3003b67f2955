"""Layers (cmcodec/__init__.py): cli -> bench -> codec/distributed -> models -> media -> core, imports pointing
down only; the normative decoder (core) and a classic decode load no benchmark code and no neural library."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import GOLDEN, ROOT

PKG = ROOT / "cmcodec"
NEURAL = ("torch", "diffusers", "transformers", "pyiqa", "accelerate", "huggingface_hub")
# what each layer may not import, at module level or inside a function (a lazy import is still a dependency)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "core": ("media", "models", "bench", "codec", "distributed", "cli", *NEURAL),
    "media": ("models", "bench", "codec", "distributed", "cli", *NEURAL),
    "models": ("bench", "codec", "distributed", "cli"),
    "codec": ("bench", "cli"),
    "distributed": ("bench", "cli"),
    "bench": ("cli",),
}


def _layer(path: Path) -> str | None:
    rel = path.relative_to(PKG)
    # the Pillow plugin and the folder runs (runs.py) work through codec: they sit on its level
    top = {"codec.py": "codec", "runs.py": "codec", "distributed.py": "distributed", "pillow_plugin.py": "codec"}
    return rel.parts[0] if len(rel.parts) > 1 else top.get(rel.name)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every import in a module: cmcodec's own as its first part below the package
    (``core``, ``codec``...), others as their top-level package."""
    rel = path.relative_to(PKG).with_suffix("").parts
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = list(rel[: len(rel) - node.level])
                mod = [*base, *(node.module.split(".") if node.module else [])]
                names = [".".join(["cmcodec", *mod, a.name]) if not mod else ".".join(["cmcodec", *mod])
                         for a in node.names]
            else:
                names = [node.module or ""]
        else:
            continue
        for n in names:
            parts = n.split(".")
            out.append((node.lineno, parts[1] if parts[0] == "cmcodec" and len(parts) > 1 else parts[0]))
    return out


def _violations() -> list[str]:
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        layer = _layer(path)
        for line, target in _imports(path) if layer in FORBIDDEN else ():
            if target in FORBIDDEN[layer] and target != layer:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {layer} imports {target}")
    return bad


def test_imports_point_down_only() -> None:
    assert _violations() == []


def test_the_static_check_sees_lazy_and_relative_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "cmcodec"
    (pkg / "core").mkdir(parents=True)
    (pkg / "media").mkdir()
    (pkg / "core" / "x.py").write_text("def f():\n    from ..bench import rd\n    import torch\n")
    (pkg / "media" / "y.py").write_text("from ..core import ids\nfrom cmcodec.models.t2i import FAMILIES\n")
    monkeypatch.setattr(sys.modules[__name__], "PKG", pkg)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert _violations() == ["cmcodec/core/x.py:2: core imports bench", "cmcodec/core/x.py:3: core imports torch",
                             "cmcodec/media/y.py:2: media imports models"]


def _loaded_after(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return json.loads(out.splitlines()[-1])


# what decoding a classic file loads: the package, core (the profile table and the model-free decoder among it),
# the image loader and codec; no Pillow plugin (registered lazily), no model or benchmark code
CLASSIC_DECODE_MODULES = [
    "cmcodec", "cmcodec._version", "cmcodec.codec", "cmcodec.core", "cmcodec.core.arith", "cmcodec.core.bitstream",
    "cmcodec.core.classic", "cmcodec.core.deps", "cmcodec.core.errors", "cmcodec.core.guidance", "cmcodec.core.ids",
    "cmcodec.core.limits", "cmcodec.core.profiles", "cmcodec.core.refcodecs", "cmcodec.core.textcode",
    "cmcodec.core.wordmodel", "cmcodec.media", "cmcodec.media.fileio", "cmcodec.media.images",
]


@pytest.mark.parametrize("name", ["image_av1s_classic.cmc", "pixel_classic.cmc", "image_hevcs_classic.cmc"])
def test_classic_decode_loads_no_model_code(name: str) -> None:
    mods = _loaded_after(f"import cmcodec\ncmcodec.decode(open({str(GOLDEN / name)!r}, 'rb').read())")
    # the intent: the model layer is never entered, not even its data or its loaders
    assert [m for m in mods if m == "cmcodec.models" or m.startswith("cmcodec.models.")] == []
    assert [m for m in mods if m.split(".")[0] in NEURAL] == []
    # and the whole list, so a new import on this path is seen and judged
    assert [m for m in mods if m.startswith("cmcodec")] == CLASSIC_DECODE_MODULES


def test_pillow_opens_loads_and_saves_cmc_after_import_without_torch(tmp_path: Path) -> None:
    # the plugin registers lazily: Pillow loads it on the first .cmc, and still no neural library
    out = tmp_path / "again.cmc"
    mods = _loaded_after(
        "import cmcodec\nfrom PIL import Image\n"
        f"im = Image.open({str(GOLDEN / 'pixel_classic.cmc')!r})\n"
        "assert im.format == 'CMC' and im.info['profile'] == 'classic'\nim.load()\n"
        f"im.save({str(out)!r}, mode='pixel', profile='classic')\n"
        f"assert Image.open({str(out)!r}).size == im.size\n"
        "assert Image.registered_extensions()['.cmc'] == 'CMC' and Image.MIME['CMC'] == 'image/x-cmc'")
    assert "cmcodec.pillow_plugin" in mods and [m for m in mods if m.split(".")[0] in NEURAL] == []


def test_reading_and_validating_every_golden_file_loads_no_benchmark_or_neural_code() -> None:
    names = sorted(p.name for p in GOLDEN.glob("*.cmc") if not p.name.startswith("invalid"))
    mods = _loaded_after("import cmcodec\nfrom cmcodec import codec\n"
                         f"for n in {names!r}:\n    codec.validate(open({str(GOLDEN)!r} + '/' + n, 'rb').read())")
    assert [m for m in mods if m.startswith("cmcodec.bench") or m.split(".")[0] in NEURAL] == []
