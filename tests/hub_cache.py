"""Hugging Face caches laid out exactly as an online run leaves them, from a manifest of a real repo
(fixtures/hub/<org>--<name>.json) and a tiny model folder of the same family.

An online ``from_pretrained`` (or ``snapshot_download``) leaves, under ``$HF_HOME/hub``::

    models--org--name/blobs/<etag>                      file contents (sha256 for LFS files, git sha1 else)
    models--org--name/snapshots/<commit>/<path>         relative symlinks into blobs/, only the files fetched
    models--org--name/refs/main                         the commit main resolved to (branch revisions only)
    models--org--name/trees/<commit>.json               huggingface_hub >= 2: the repo's FULL file listing
    models--org--name/.no_exist/<commit>/<path>         empty markers of files the loader asked for and the
                                                        hub answered 404 (offline, they read as absent)

The snapshot holds what the tiny folder can supply under the real names: the same path, an fp16 variant
(``x.fp16.safetensors`` from ``x.safetensors``), or shards (``x-00001-of-00002.safetensors`` and the
index json, split from ``x.safetensors``). Every other file of the manifest (README, .bin, .h5, onnx,
single-file checkpoints, files the family factory does not write) is in the listing only, as after an
online run that did not need it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

FIXTURES_HUB = Path(__file__).resolve().parents[1] / "fixtures" / "hub"
SHARD = re.compile(r"^(?P<stem>.+?)(?P<var>\.[a-z0-9_]+)?-(?P<i>\d{5})-of-(?P<n>\d{5})\.safetensors$")
INDEX = re.compile(r"^(?P<stem>.+)\.safetensors\.index(?P<var>\.[a-z0-9_]+)?\.json$")
VARIANT = re.compile(r"^(?P<stem>.+)\.(?P<var>fp16|bf16)\.safetensors$")
LFS_SUFFIXES = (".safetensors", ".bin", ".h5", ".ckpt", ".pt", ".pth", ".onnx", ".msgpack", ".gguf", ".png",
                ".jpg", ".jpeg", ".gif", ".webp", "onnx_data", ".pb")


def manifests() -> dict[str, dict]:
    """Every manifest, by repo id."""
    out = {}
    for p in sorted(FIXTURES_HUB.glob("*.json")):
        m = json.loads(p.read_text())
        if p.stem != m["repo"].replace("/", "--"):
            raise ValueError(f"{p.name}: file name must be {m['repo'].replace('/', '--')}.json")
        out[m["repo"]] = m
    return out


def fake_commit(repo: str) -> str:
    """A stand-in commit id for a manifest whose commit is not known (40 hex digits, stable per repo)."""
    return hashlib.sha1(f"unknown commit of {repo}".encode()).hexdigest()


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _to_fp16(src: Path, dst: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    sd = {k: (v.to(torch.float16) if v.is_floating_point() else v) for k, v in load_file(src).items()}
    save_file(sd, dst, metadata={"format": "pt"})


def _shards(src: Path, n: int) -> list[dict]:
    """The tensors of src split into n groups (keys in order), each a state dict."""
    from safetensors.torch import load_file

    sd = load_file(src)
    keys = list(sd)
    size = -(-len(keys) // n)
    return [{k: sd[k] for k in keys[i * size:(i + 1) * size]} for i in range(n)]


def supply(tiny: Path, path: str, work: Path) -> Path | None:
    """A file with the contents the snapshot holds under ``path``, made from the tiny folder; None when the
    tiny folder cannot supply it (then it is in the listing only)."""
    from safetensors.torch import save_file

    direct = tiny / path
    if direct.is_file():
        return direct
    folder, _, name = path.rpartition("/")
    base = tiny / folder if folder else tiny
    if m := VARIANT.match(name):
        full = base / f"{m['stem']}.safetensors"
        if full.is_file():
            out = work / path
            out.parent.mkdir(parents=True, exist_ok=True)
            _to_fp16(full, out)
            return out
        return None
    if m := SHARD.match(name):
        var = m["var"] or ""
        full = base / f"{m['stem']}.safetensors"
        if not full.is_file():
            return None
        src = full
        if var:
            src = work / folder / f"{m['stem']}{var}.full.safetensors"
            src.parent.mkdir(parents=True, exist_ok=True)
            _to_fp16(full, src)
        part = _shards(src, int(m["n"]))[int(m["i"]) - 1]
        out = work / path
        out.parent.mkdir(parents=True, exist_ok=True)
        save_file(part, out, metadata={"format": "pt"})
        return out
    if m := INDEX.match(name):
        var = m["var"] or ""
        full = base / f"{m['stem']}.safetensors"
        if not full.is_file():
            return None
        return None  # written by build_cache once the shard names are known
    return None


def build_cache(hf_home: Path, manifest: dict, tiny: Path, *, revision_ref: bool = True,
                drop: tuple[str, ...] = (), only: tuple[str, ...] | None = None) -> Path:
    """Lay out the cache of manifest['repo'] under hf_home/hub; returns the snapshot folder.

    ``revision_ref``: write refs/main (a run at a branch); a run at a pinned commit writes no ref.
    ``drop``: glob patterns of manifest files an online run did not fetch (e.g. the non-fp16 weights of a
    run that asked for the fp16 variant). ``only``: fetch just these patterns.
    """
    import fnmatch

    repo, files = manifest["repo"], list(manifest["files"])
    commit = manifest.get("commit") or fake_commit(repo)
    root = hf_home / "hub" / ("models--" + repo.replace("/", "--"))
    snap = root / "snapshots" / commit
    work = hf_home / ".work" / repo.replace("/", "--")
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    snap.mkdir(parents=True, exist_ok=True)

    def fetched(path: str) -> bool:
        if any(fnmatch.fnmatch(path, d) for d in drop):
            return False
        return only is None or any(fnmatch.fnmatch(path, o) for o in only)

    contents: dict[str, bytes] = {}
    for path in files:
        if INDEX.match(path.rpartition("/")[2]) or not fetched(path):
            continue
        src = supply(tiny, path, work)
        if src is not None:
            contents[path] = src.read_bytes()
    for path in files:  # sharding indexes: the weight map of the shards supplied above
        m = INDEX.match(path.rpartition("/")[2])
        if not m or not fetched(path):
            continue
        folder = path.rpartition("/")[0]
        var = m["var"] or ""
        weight_map = {}
        for shard_path in contents:
            sm = SHARD.match(shard_path.rpartition("/")[2])
            if sm and shard_path.rpartition("/")[0] == folder and sm["stem"] == m["stem"] and (sm["var"] or "") == var:
                from safetensors import safe_open

                tmp = work / "index-read.safetensors"
                tmp.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_bytes(contents[shard_path])
                with safe_open(tmp, "pt") as f:
                    weight_map.update({k: shard_path.rpartition("/")[2] for k in f.keys()})  # noqa: SIM118
        if weight_map:
            contents[path] = json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2).encode()

    listing = {}
    for path in files:
        data = contents.get(path)
        lfs = path.endswith(LFS_SUFFIXES)
        if data is None:  # listed, never fetched: the size the manifest gives, ids that match no blob
            size = int(manifest.get("sizes", {}).get(path, 1000))
            entry = {"size": size, "blob_id": hashlib.sha1(f"{repo}/{path}".encode()).hexdigest()}
            if lfs:
                entry |= {"lfs_sha256": hashlib.sha256(f"{repo}/{path}".encode()).hexdigest(), "lfs_size": size}
            listing[path] = entry
            continue
        sha1 = _git_blob_sha1(data)
        entry = {"size": len(data), "blob_id": sha1}
        etag = sha1
        if lfs:
            etag = hashlib.sha256(data).hexdigest()
            entry |= {"lfs_sha256": etag, "lfs_size": len(data)}
        listing[path] = entry
        (root / "blobs" / etag).write_bytes(data)
        link = snap / path
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(os.path.relpath(root / "blobs" / etag, link.parent), link)
    # transformers' AutoTokenizer reads config.json first in the folder it loads from: a tokenizer in a
    # subfolder (InstructBLIP's qformer_tokenizer/) has none, the hub answers 404 and the online run leaves a
    # .no_exist marker. Without it an offline load of that subfolder fails and the processor silently falls
    # back to the root tokenizer.
    for path in files:
        folder, _, name = path.rpartition("/")
        if folder and name == "tokenizer_config.json" and f"{folder}/config.json" not in files:
            marker = root / ".no_exist" / commit / folder / "config.json"
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
    (root / "trees").mkdir(exist_ok=True)
    (root / "trees" / f"{commit}.json").write_text(
        json.dumps({"format_version": 1, "files": dict(sorted(listing.items()))}, indent=1))
    if revision_ref:
        (root / "refs").mkdir(exist_ok=True)
        (root / "refs" / "main").write_text(commit)  # huggingface_hub writes the bare hash, no newline
    shutil.rmtree(work, ignore_errors=True)
    return snap
