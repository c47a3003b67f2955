"""Model loading is safe: no unpickling, no remote code, no network when offline, only registered profiles."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
from conftest import GOLDEN

import cmcodec
from cmcodec.core import bitstream
from cmcodec.core.errors import FormatError, ModelError


def test_pickle_weights_are_never_loaded(tiny_sd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    folder = tmp_path / "pickled-sd"
    shutil.copytree(tiny_sd, folder)
    for st in folder.rglob("*.safetensors"):  # the same weights, as pickles only
        from safetensors.torch import load_file

        torch.save(load_file(st), st.with_name(st.name.replace(".safetensors", ".bin")))
        st.unlink()

    def no_unpickling(*a, **k):
        raise AssertionError("torch.load called: a pickle would have been unpickled")

    monkeypatch.setattr(torch, "load", no_unpickling)
    with pytest.raises(ModelError, match="cannot load T2I model"):
        cmcodec.decode((GOLDEN / "text_wlm2.cmc").read_bytes(), cmcodec.DecodeOptions(model_path=str(folder)))


def test_offline_never_opens_a_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*a, **k):
        raise AssertionError(f"network access while offline: {a}")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(ModelError, match="offline"):
        cmcodec.decode((GOLDEN / "text_wlm2.cmc").read_bytes())


def test_a_file_can_only_name_registered_profiles() -> None:
    ok = bitstream.pack(mode="text", width=64, height=64, profile_id=4, sections=[bitstream.Section(0, 2, b"x")])
    assert cmcodec.read_header(ok).profile_name == "realvisxl-v4"
    bad = bitstream.pack(mode="text", width=64, height=64, profile_id=99, sections=[bitstream.Section(0, 2, b"x")])
    with pytest.raises(FormatError, match="unknown decoder profile id 99"):  # before any model is looked up
        cmcodec.decode(bad)


def _blip_copy(tiny_blip: Path, folder: Path) -> Path:
    shutil.copytree(tiny_blip, folder)
    return folder


def test_captioner_folder_holding_only_pickles_is_refused(tiny_blip: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from safetensors.torch import load_file

    from cmcodec.models import i2t

    folder = _blip_copy(tiny_blip, tmp_path / "pickled-blip")
    for st in folder.rglob("*.safetensors"):  # the same weights, as a pickle only
        torch.save(load_file(st), st.with_name("pytorch_model.bin"))
        st.unlink()

    def no_unpickling(*a, **k):
        raise AssertionError("torch.load called: a pickle would have been unpickled")

    monkeypatch.setattr(torch, "load", no_unpickling)
    i2t.clear_cache()
    with pytest.raises(ModelError, match="cannot load I2T model"):
        i2t.load(str(folder), "cpu")


def test_captioner_folder_asking_for_its_own_code_is_refused(tiny_blip: Path, tmp_path: Path) -> None:
    import json

    from cmcodec.models import i2t

    folder = _blip_copy(tiny_blip, tmp_path / "remote-code-blip")
    marker = tmp_path / "code-ran"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                    "from transformers import BlipForConditionalGeneration as Evil\n")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForVision2Seq": "evil.Evil", "AutoModelForImageTextToText": "evil.Evil",
                       "AutoModel": "evil.Evil"}
    cfg["architectures"] = ["Evil"]
    (folder / "config.json").write_text(json.dumps(cfg))
    i2t.clear_cache()
    try:
        i2t.load(str(folder), "cpu")  # may load the registered class, never the folder's own code
    except ModelError:
        pass
    assert not marker.exists(), "the model folder's own Python code was executed"
