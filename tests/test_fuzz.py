"""Hostile files: property-based parser fuzzing, a short mutation run (CI's version of benchmarks/fuzz.py),
and regressions for what fuzzing found."""

from __future__ import annotations

import time

import pytest
from conftest import GOLDEN
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cmcodec import codec
from cmcodec.bench import fuzzing
from cmcodec.core import bitstream
from cmcodec.core.bitstream import Section
from cmcodec.core.errors import CmcodecError, GuidanceDecodeError, LimitError

SEEDS = fuzzing.seeds(GOLDEN)
PARROTS_IMG = GOLDEN.parents[1] / "fixtures" / "images" / "parrots_192x128.png"


@given(st.binary(max_size=600))
@settings(max_examples=500, deadline=None)
def test_arbitrary_bytes_only_raise_project_errors(data: bytes) -> None:
    fuzzing.target(data)  # raises anything but CmcodecError -> test fails


@given(st.binary(max_size=300))
@settings(max_examples=500, deadline=None)
def test_sealed_bodies_after_the_magic_reach_the_payload_decoders(body: bytes) -> None:
    data = bitstream.seal(b"\xcc" + body)
    try:
        codec.validate(data)
    except CmcodecError:
        pass


@given(st.sampled_from(SEEDS), st.integers(0, 10_000), st.binary(min_size=1, max_size=8))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_golden_bodies_with_overwritten_bytes(seed: bytes, pos: int, patch: bytes) -> None:
    b = bytearray(seed)
    i = 1 + pos % max(1, len(b) - 1)
    b[i : i + len(patch)] = patch
    fuzzing.target(bytes(b))


# CPU seconds (all threads of this process), not wall time: a loaded machine stretches wall time many times
# over but not the work done, which is what these bounds are about (pathological inputs ran for minutes)
CPU_BOUND_S = 1.0

def test_short_mutation_run_has_no_escapes_and_no_hangs() -> None:
    stats = fuzzing.run_mutations(4000, SEEDS, seed=11)
    assert stats.inputs == 4000
    assert stats.other_exceptions == 0, stats.failures
    assert stats.hangs_over_1s == 0, stats.failures


def test_mutator_counts_foreign_exceptions(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(data: bytes) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(fuzzing, "target", broken)
    stats = fuzzing.run_mutations(5, SEEDS, seed=1)
    assert stats.other_exceptions == 5 and "KeyError" in stats.failures[0][0]


def test_regression_j2k_reference_claiming_a_huge_picture() -> None:
    # found by the mutator: a SIZ header of ~168 Mpixel made Pillow allocate ~400 MB before failing
    data = (GOLDEN / "full_j2k.cmc").read_bytes()
    h = bitstream.read_header(data)
    ref = h.section("image_ref")
    assert ref is not None and ref.payload[1:5] == b"\xff\x4f\xff\x51"
    bad = bytearray(ref.payload)
    bad[9:17] = (12000).to_bytes(4, "big") * 2  # Xsiz, Ysiz: 144 Mpixel, under Pillow's bomb error
    sections = [Section(s.type_id, s.coder_id, bytes(bad) if s is ref else s.payload) for s in h.sections]
    forged = bitstream.pack(mode=h.mode, width=h.width, height=h.height, profile_id=h.profile_id, seed=h.seed,
                            sections=sections)
    t0 = time.process_time()
    with pytest.raises(GuidanceDecodeError, match="expected a 80x54 picture, found 12000x12000"):
        codec.validate(forged)
    # refused from the SIZ header: ~0.1 s of CPU with the lazy imports, where decoding 144 Mpixel takes seconds
    assert time.process_time() - t0 < CPU_BOUND_S


def test_pixel_map_cell_count_is_bounded_before_decoding() -> None:
    # a 30-byte file must not ask for 2048 x 2048 cells (minutes of decoding)
    payload = bytes([0 << 5 | 7 << 2 | 0]) + b"\x00" * 8  # block 8, 8 bits
    data = bitstream.pack(mode="pixel", width=16384, height=16384, profile_id=1,
                          sections=[Section(1, 0, payload), Section(0, 0, b"\x01")])
    with pytest.raises(LimitError, match="expected at most 16384 cells"):
        codec.validate(data)


@pytest.mark.parametrize("path", sorted((GOLDEN.parents[1] / "tests" / "fuzz_regressions").glob("*.bin")),
                         ids=lambda p: p.name)
def test_fuzz_regressions_finish_fast_with_project_errors(path) -> None:
    # inputs found by benchmarks/fuzz.py (control byte first, see cmcodec.bench.fuzzing.target)
    t0 = time.process_time()
    fuzzing.target(path.read_bytes())
    assert time.process_time() - t0 < 2 * CPU_BOUND_S  # 0.2-0.3 s of CPU here; they were fuzzer timeouts


def test_caption_length_limit_is_configurable() -> None:
    data = codec.encode(PARROTS_IMG, mode="text", caption="A red kite over a green field.")
    assert codec.validate(data).mode == "text"
    with pytest.raises(LimitError, match="exceeds the limit of 10"):
        codec.validate(data, bitstream.Limits(max_caption_chars=10))
