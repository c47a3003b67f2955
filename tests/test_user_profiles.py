"""User profiles (spec §4.4.1): a decoder row defined in a file outside the source, over a tiny model folder,
through the command line as a user types it: encode, info, decode, evaluate; a changed or absent definition is
refused with one line naming the hashes; built-in rows cannot be shadowed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import HOUSE, PARROTS

import cmcodec
from cmcodec.cli import main
from cmcodec.core import bitstream, profiles
from cmcodec.core.errors import ConfigError, ProfileError, UnknownSectionError

DEFINITION = """
[profiles.my-sd]
id = 3
like = "sd-turbo"          # sd-turbo's modes, scheduler and resolution rule, then these fields
model = "tiny-sd"          # a folder beside this file (or a hub id)
revision = "v1"            # a folder's label: change it when the weights change
description = "my fine-tune"
license = "mit"
long_side = 64
modes.text.steps = 2
"""


@pytest.fixture()
def user_file(tmp_path: Path, tiny_sd: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A profiles file beside a tiny SD folder; $CMCODEC_PROFILES restored after the test."""
    monkeypatch.setenv(profiles.ENV_PROFILES, "")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny-sd").symlink_to(tiny_sd)
    f = tmp_path / "my.toml"
    f.write_text(DEFINITION, encoding="utf-8")
    return f


def cli(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.output


def test_encode_info_decode_evaluate_through_the_cli(user_file: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cmc, png = tmp_path / "h.cmc", tmp_path / "h.png"
    code, out = cli("encode", HOUSE, "-o", cmc, "--caption", "a red house", "--profile", "my-sd",
                    "--profiles-file", user_file)
    assert code == 0, out
    h = cmcodec.read_header(cmc.read_bytes())
    [row] = profiles.read_profiles_file(user_file)
    assert profiles.is_private(h.profile_id) and h.profile_id == row.profile.id
    assert profiles.split_private(h.profile_id) == (3, row.short)
    # a private id costs 63 header bits against sd-turbo's 1: 8 more bytes of header
    plain = cmcodec.encode(HOUSE, caption="a red house")
    assert len(cmc.read_bytes()) - len(plain) == 8
    monkeypatch.setenv(profiles.ENV_PROFILES, "")  # --profiles-file put it there (for worker processes)
    code, out = cli("info", cmc)  # no definition at hand: the id's parts, no error
    assert code == 0 and f"profile user-3:{row.short}" in out
    code, out = cli("info", cmc, "--profiles-file", user_file)
    assert code == 0 and "profile my-sd" in out
    code, out = cli("decode", cmc, "-o", png, "--device", "cpu", "--profiles-file", user_file)
    assert code == 0, out
    got = cmcodec.decode(cmc.read_bytes(), cmcodec.DecodeOptions(device="cpu"))  # the env variable, in-process
    assert got.size == (96, 64) and got.tobytes() == cmcodec.decode(cmc.read_bytes()).tobytes()

    gt = tmp_path / "gt"
    gt.mkdir()
    shutil.copy(HOUSE, gt / "SCI_house.png")
    shutil.copy(PARROTS, gt / "NSI_parrots.png")
    caps = tmp_path / "caps.csv"
    caps.write_text("name,text\nSCI_house.png,A red house.\nNSI_parrots.png,Two parrots.\n", encoding="utf-8")
    code, out = cli("evaluate", gt, "-o", tmp_path / "runs", "--captions", caps, "--profile", "my-sd", "--modes",
                    "text,image", "--fr", "psnr", "--nr", "piqe", "--device", "cpu", "--profiles-file", user_file)
    assert code == 0, out
    run = tmp_path / "runs" / f"caps__my-sd@{row.short}"  # the definition names the run
    assert sorted(p.name for p in (run / "text").iterdir()) == ["NSI_parrots.cmc", "NSI_parrots.png",
                                                                 "SCI_house.cmc", "SCI_house.png"]
    assert cmcodec.read_header((run / "image" / "SCI_house.cmc").read_bytes()).profile_id == row.profile.id
    assert set(json.loads((run / "scores.json").read_text())["modes"]) == {"text", "image"}

    rd = tmp_path / "rd"
    code, out = cli("rd-curve", gt, "-o", rd, "--codecs", "none", "--profiles", "my-sd", "--modes", "image",
                    "--metrics", "psnr", "--targets", "0.3", "--jobs", "1", "--profiles-file", user_file)
    assert code == 0, out
    points = [json.loads(x) for x in (rd / "points.jsonl").read_text().splitlines()]
    assert {p["curve"] for p in points} == {f"cmc:my-sd@{row.short}:image"} and all("psnr" in p for p in points)


def test_changed_and_absent_definitions_are_refused_naming_the_hashes(user_file: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cmc = tmp_path / "h.cmc"
    assert cli("encode", HOUSE, "-o", cmc, "--caption", "a red house", "--profile", "my-sd",
               "--profiles-file", user_file)[0] == 0
    [old] = profiles.read_profiles_file(user_file)
    changed = tmp_path / "changed.toml"
    changed.write_text(DEFINITION.replace("steps = 2", "steps = 3"), encoding="utf-8")
    [new] = profiles.read_profiles_file(changed)
    assert new.number == old.number and new.short != old.short
    monkeypatch.setenv(profiles.ENV_PROFILES, "")
    code, out = cli("decode", cmc, "-o", tmp_path / "x.png", "--profiles-file", changed)
    assert code == ProfileError.exit_code and len(out.strip().splitlines()) == 1
    assert f"user profile 3 of definition {old.short}" in out and f"has definition {new.short}" in out
    assert not (tmp_path / "x.png").exists()
    monkeypatch.setenv(profiles.ENV_PROFILES, "")
    code, out = cli("decode", cmc, "-o", tmp_path / "x.png")
    assert code == ProfileError.exit_code and len(out.strip().splitlines()) == 1
    assert f"needs user profile 3 of definition {old.short}" in out and "--profiles-file" in out
    # the old definition kept beside the new one under another name still decodes the old file
    both = tmp_path / "both.toml"
    both.write_text(DEFINITION.replace("steps = 2", "steps = 3") + DEFINITION.replace("my-sd", "my-sd-v1"))
    monkeypatch.setenv(profiles.ENV_PROFILES, "")
    code, out = cli("decode", cmc, "-o", tmp_path / "x.png", "--device", "cpu", "--profiles-file", both)
    assert code == 0, out


def test_built_in_rows_cannot_be_shadowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(profiles.ENV_PROFILES, "")
    f = tmp_path / "p.toml"
    f.write_text('[profiles.sd15]\nid = 0\nlike = "sd15"\nmodel = "org/my-sd15"\n')
    with pytest.raises(ConfigError, match="'sd15' is a built-in profile; a user profile cannot shadow"):
        profiles.read_profiles_file(f)
    code, out = cli("encode", HOUSE, "-o", tmp_path / "x.cmc", "--caption", "x", "--profiles-file", f)
    assert code == ConfigError.exit_code and "cannot shadow a built-in row" in out
    for bad in ("3", "128", "-1", "true"):  # a built-in id cannot be taken: ids are private numbers 0..127
        f.write_text(f'[profiles.mine]\nid = {bad}\nlike = "sd15"\nmodel = "org/mine"\n')
        if bad == "3":
            [row] = profiles.read_profiles_file(f)
            assert row.profile.id >= 2**31 and profiles.get_profile(3).name == "sd15"
        else:
            with pytest.raises(ConfigError, match=r"id must be a private number 0\.\.127"):
                profiles.read_profiles_file(f)
    # the reader keeps refusing ids no row has below the private range
    free = max(p.id for p in profiles.PROFILES if p.id < 2**31) + 1  # the next built-in id, not yet a row
    data = bitstream.pack(mode="text", width=8, height=8, profile_id=free, sections=[bitstream.Section(0, 2, b"x")])
    with pytest.raises(UnknownSectionError, match=f"unknown decoder profile id {free}"):
        cmcodec.read_header(data)


def test_definition_hash_is_pinned() -> None:
    # the hash a file's private id carries: canonical JSON of the pixel-deciding fields (spec §4.4.1); a change
    # here would orphan every user profile's files
    [row] = profiles.parse_profiles('[profiles.x]\nid = 0\nlike = "sd-turbo"\nmodel = "org/name"\n'
                                    'revision = "0123456789abcdef0123456789abcdef01234567"\n', "pin")
    assert row.digest == "6de5a33915c2b569b8bde09ad6eafeca87529ed6a0d48265403a2f5438d030e1"
    assert row.profile.id == 2**31 + int(row.digest[:6], 16)


def test_json_files_entry_points_and_bad_fields(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(profiles.ENV_PROFILES, "")
    doc = {"profiles": {"my-flux": {"id": 7, "like": "flux-schnell", "model": "org/my-flux",
                                    "modes": {"text": {"steps": 2}}}}}
    f = tmp_path / "p.json"
    f.write_text(json.dumps(doc))
    [row] = profiles.read_profiles_file(f)
    assert row.profile.family == "flux" and row.profile.modes["text"].steps == 2 and row.number == 7
    # a package's entry point (group cmcodec.profiles) naming a mapping of the same shape
    dist = tmp_path / "site" / "myplugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[cmcodec.profiles]\nmine = myplugin_rows:ROWS\n")
    (tmp_path / "site" / "myplugin_rows.py").write_text(f"ROWS = {doc!r}\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for name, fresh in (("_ENTRY_POINTS_READ", False), ("_ENTRY_POINTS", []), ("_USER", {})):
        monkeypatch.setattr(profiles, name, fresh)  # read again now, and forgotten after the test
    assert profiles.get_profile("my-flux").id == row.profile.id
    code, out = cli("profiles", "--json")
    assert code == 0, out
    mine = [d for d in json.loads(out) if d["name"] == "my-flux"]
    assert mine[0]["user"]["definition_sha256"] == row.digest and "entry point mine" in mine[0]["user"]["origin"]
    # one-line refusals naming the field, what was expected and what was found
    for text, msg in (('[profiles.a]\nid = 1\nmodel = "o/a"\nmodes.text.steps = 2\n',
                       r"modes.text: pipeline is required"),
                      ('[profiles.a]\nid = 1\nlike = "sd15"\nmodel = "o/a"\nmodes.text.steps = "2"\n',
                       r"profile a.modes.text.steps: expected an integer, found '2'"),
                      ('[profiles.a]\nid = 1\nlike = "sd15"\nmodel = "o/a"\nsteps = 2\n', r"unknown field steps"),
                      ('[profiles.a]\nid = 1\nlike = "sd15"\n', r"model is required"),
                      ("[profiles.a\n", r"expected a TOML profiles file")):
        with pytest.raises(ConfigError, match=msg):
            profiles.parse_profiles(text, "f.toml")


def test_the_readme_example_is_a_valid_profiles_file() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index("## Bring your own model"):]
    text = section[section.index("```toml") + 7:section.index("```", section.index("```toml") + 7)]
    [row] = profiles.parse_profiles(text, "README.md")
    p = row.profile
    assert (p.name, row.number, p.family, p.long_side, p.revision) == ("my-sd21", 0, "sd", 768, "v3")
    assert p.modes["text"].steps == 4 and p.modes["text"].guidance_scale == 1.5
    assert p.modes["full"].strength == 0.4 and p.modes["pixel"] == profiles.get_profile("sd-turbo").modes["pixel"]
    assert row.short == "02f63d"  # the hash the README quotes
