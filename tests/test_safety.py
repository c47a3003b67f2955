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


def test_loaders_pass_safe_flags() -> None:
    import inspect

    from cmcodec.models import i2t, t2i

    for mod in (i2t, t2i):
        src = inspect.getsource(mod)
        assert "use_safetensors=True" in src
        assert "trust_remote_code=True" not in src and "custom_pipeline" not in src.split('"""')[-1]
