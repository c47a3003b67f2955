"""The GPU benchmarks' own code paths, run on CPU with tiny random-weight models: a product change that breaks a
benchmark fails here, not on the device machine. Speed is never checked here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

pytest.importorskip("diffusers")
import gpu_speed  # noqa: E402


@pytest.fixture(scope="module")
def bench_blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The benchmark's BLIP-large builder at tiny sizes: blip-large's vocabulary and the benchmark's own
    200-word tokenizer, so random weights emit the same mostly-wordless ids as the real-size model."""
    return gpu_speed.build_blip_large(tmp_path_factory.mktemp("models") / "blip", gpu_speed.TINY_BLIP, "float32")


def test_encode_benchmark_writes_captions_of_the_asked_length(bench_blip: Path) -> None:
    from cmcodec.models import i2t

    rows = gpu_speed.bench_encode(bench_blip, "eager", [1, 2], [6], emit=lambda r: None, device="cpu",
                                  dtype="fp32", reps=1, trace=[2])
    assert [r.get("error") for r in rows] == [None, None, None]
    # the start token and 6 generated ones: no caption ended early, none came out empty
    assert [r["sequence_length"] for r in rows[:2]] == [7, 7]
    tr = rows[2]  # the profiled caption call
    assert tr["mode"] == "caption trace" and tr["batch"] == 2 and tr["wall_ms"] > 0 and tr["kernels"] == 0
    assert any(r["op"] in ("aten::addmm", "aten::mm", "aten::linear", "aten::bmm") for r in tr["top_ops"]), tr
    # the suppression is the benchmark's alone: a fresh load of the product path has none
    _, net, _, _ = i2t.load("blip-large", "cpu", "fp32", str(bench_blip))
    assert not net.text_decoder.generation_config.suppress_tokens
    i2t.clear_cache()


def test_random_captioner_weights_alone_write_no_caption(bench_blip: Path) -> None:
    """What caption_words_only is for: without it cmcodec refuses the random model's empty output."""
    from PIL import Image

    from cmcodec.core.errors import ModelError
    from cmcodec.models import i2t

    with pytest.raises(ModelError, match="returned an empty caption"):
        i2t.caption_batch([Image.new("RGB", (96, 64))], model="blip-large", model_path=str(bench_blip),
                          device="cpu", dtype="fp32", max_new_tokens=6)
    i2t.clear_cache()


def test_decode_benchmark_runs_its_rows(tiny_sd: Path) -> None:
    from cmcodec.models import t2i

    rows = gpu_speed.bench_decode("sd-turbo", "eager", tiny_sd, None, ["text"], [1, 2], budget_s=60,
                                  emit=lambda r: None, size=(96, 64), dtype="fp32", device="cpu")
    assert [(r["batch"], r.get("error")) for r in rows] == [(1, None), (2, None)]
    assert all(r["images_per_s"] > 0 for r in rows)
    got = gpu_speed.stage_breakdown("sd-turbo", tiny_sd, None, 2, reps=1, size=(96, 64), dtype="fp32", device="cpu")
    t2i.clear_cache()
    assert {k: v["calls"] for k, v in got["stages"].items()} == {
        "text encoder": 1, "unet": 1, "autoencoder decode": 1, "to images (8 bits, resize, to host, PIL)": 1}
    assert 0 < sum(v["share"] for v in got["stages"].values()) <= 1.01
    assert t2i._to_images.__name__ == "_to_images" and not hasattr(t2i._to_images, "__wrapped__")  # restored
    tr = gpu_speed.trace_call("sd-turbo", tiny_sd, None, 2, "eager", size=(96, 64), dtype="fp32", device="cpu")
    t2i.clear_cache()
    assert tr["wall_ms"] > 0 and tr["kernels"] == 0 and tr["batch"] == 2
    ops = [r["op"] for r in tr["top_ops"]]
    assert "aten::convolution" in ops or "aten::_convolution" in ops or "aten::mkldnn_convolution" in ops, ops


def test_end_to_end_benchmark_runs_the_cli_both_ways(tiny_sd: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """benchmarks/e2e_speed.py's own path on CPU with tiny models: encode a folder with the (benchmark-set)
    captioner through the CLI, decode what it wrote, and time the stages."""
    import e2e_speed

    from cmcodec import runs

    monkeypatch.setattr(runs, "PNG_WRITERS", None)  # the benchmark sets it (--writers); put back after

    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny-sd").symlink_to(tiny_sd)
    got = e2e_speed.main(["--tiny", "--device", "cpu", "--files", "3", "--batch-size", "2", "--size", "96x64",
                          "--tokens", "6", "--models", str(models), "--work", str(tmp_path / "work"),
                          "--writers", "2", "--json", str(tmp_path / "e2e.json")])
    assert got["encode"]["exit"] == 0 and got["decode"]["exit"] == 0 and got["decode"]["outputs"] == 3
    assert got["encode"]["stages"]["caption (I2T model)"]["calls"] == 2  # batches of 2 and 1
    assert got["decode"]["stages"]["write PNG (encode, fsync)"]["calls"] == 3
    assert got["decode"]["stages"]["start_batch (T2I model call, GPU work queued)"]["calls"] == 2
    assert got["decode"]["stages"]["finish_batch (wait for the pixels, PIL)"]["calls"] == 2
    saved = json.loads((tmp_path / "e2e.json").read_text())
    assert saved["files"] == 3 and saved["png_writers"] == 2


def test_png_write_benchmark_runs_its_rows(tmp_path: Path) -> None:
    """benchmarks/png_write.py's own path: pictures written into one folder by writer threads through
    fileio.save_image, a row per kind, the JSON with the settings that made them."""
    import png_write

    got = png_write.main(["--kinds", "smooth,noise", "--files", "3", "--threads", "2", "--work", str(tmp_path / "w"),
                          "--json", str(tmp_path / "pw.json")])
    assert [(r["kind"], r["files"]) for r in got["rows"]] == [("smooth", 3), ("noise", 3)]
    assert all(r["images_per_s"] > 0 and r["mb"] > 0 for r in got["rows"])
    assert sorted(p.name for p in (tmp_path / "w" / "noise").iterdir()) == [f"o{i:06d}.png" for i in range(3)]
    assert json.loads((tmp_path / "pw.json").read_text())["png_settings"] == {"level": 1, "strategy": 3,
                                                                               "filter": 128}
    with pytest.raises(SystemExit, match="--kodak"):
        png_write.pictures("kodak", 1, None)


def test_feeder_contention_benchmark_runs_its_rows(tmp_path: Path) -> None:
    """benchmarks/feeder_contention.py's own path: the feeder alone, then beside a writer at the process's
    priority and (Linux) lowered, each row against the feeder's rate alone."""
    import feeder_contention

    got = feeder_contention.main(["--writers", "0,1", "--seconds", "0.3", "--json", str(tmp_path / "f.json")])
    rows = got["rows"]
    assert [(r["writers"], r["writer_priority"]) for r in rows][:2] == [(0, "same"), (1, "same")]
    assert rows[0]["share_of_alone"] == 1.0 and all(r["feeder_calls_per_s"] > 0 for r in rows)
    if sys.platform.startswith("linux"):
        assert rows[2]["writer_priority"] == "nice +5"
    assert json.loads((tmp_path / "f.json").read_text())["rows"] == rows
