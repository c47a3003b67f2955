"""How much of a budget each mode spends: bytes written against --bpp budgets, per mode and picture.

    python benchmarks/budget_fill.py [--images ../shared/data/kodak] [--limit 8] [--json OUT]

For every picture, mode (pixel / image / auto with the classic profile; pixel / full / auto with sd-turbo and a
fixed caption, so no model loads) and budget it records the budget, the mode's smallest file
(codec.smallest_size), the bytes written and the fill (bytes - smallest) / (budget - smallest), which rate
control keeps at 0.7 or more. Prints the median and lowest fill per mode and budget; writes every row as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

from PIL import Image

import cmcodec
from cmcodec import codec
from cmcodec.core.errors import BudgetError

BPPS = (0.002, 0.005, 0.01, 0.02, 0.05)
CASES = (("pixel", "classic"), ("image", "classic"), ("auto", "classic"),
         ("pixel", "sd-turbo"), ("full", "sd-turbo"), ("auto", "sd-turbo"))
# a 20-word caption of the CMC-Bench kind (GPT-4V style); the neural rows store it, trimmed as the budget asks
CAPTION = ("A red barn with white trim stands in a green field under a clear blue sky, with a wooden fence "
           "and tall trees behind it.")


def run(images: list[Path]) -> list[dict]:
    rows = []
    for path in images:
        img = Image.open(path).convert("RGB")
        w, h = img.size
        for mode, profile in CASES:
            for bpp in BPPS:
                budget = codec.budget_bytes(w, h, bpp)
                smallest = codec.smallest_size(img, mode=mode, profile=profile, max_bytes=budget)
                row = {"image": path.name, "mode": mode, "profile": profile, "bpp": bpp, "budget": budget,
                       "smallest": smallest}
                t = time.perf_counter()
                try:
                    r = codec.encode_result(img, mode=mode, profile=profile, caption=CAPTION, bpp=bpp)
                except BudgetError:
                    row.update(bytes=None, fill=None)
                else:
                    n = len(r.data)
                    pm = r.header.section("pixel_map")
                    row.update(bytes=n, fill=round((n - smallest) / (budget - smallest), 3), used_mode=r.mode,
                               caption_words=len(r.caption.split()),
                               pixel_params=pm.payload[0] if pm is not None else None)
                row["seconds"] = round(time.perf_counter() - t, 3)
                rows.append(row)
        print(f"{path.name} done", file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| mode | profile | bpp | budget (median) | bytes (median) | fill median | fill lowest | auto chose |",
             "|---|---|---|---|---|---|---|---|"]
    for mode, profile in CASES:
        for bpp in BPPS:
            sel = [r for r in rows if (r["mode"], r["profile"], r["bpp"]) == (mode, profile, bpp)]
            ok = [r for r in sel if r["bytes"] is not None]
            if not ok:
                lines.append(f"| {mode} | {profile} | {bpp} | - | refused | - | - | - |")
                continue
            chose = ", ".join(sorted({r["used_mode"] for r in ok})) if mode == "auto" else ""
            lines.append(f"| {mode} | {profile} | {bpp} | {statistics.median(r['budget'] for r in sel):.0f} | "
                         f"{statistics.median(r['bytes'] for r in ok):.0f} | "
                         f"{statistics.median(r['fill'] for r in ok):.2f} | {min(r['fill'] for r in ok):.2f} | "
                         f"{chose} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared/data/kodak")
    ap.add_argument("--limit", type=int, default=8, help="first N pictures of the folder, by name")
    ap.add_argument("--json", type=Path, help="write every row here")
    a = ap.parse_args()
    images = sorted(p for p in a.images.iterdir() if p.suffix.lower() == ".png")[: a.limit]
    if not images:
        sys.exit(f"{a.images}: expected PNG pictures, found none")
    rows = run(images)
    print(table(rows))
    if a.json:
        a.json.write_text(json.dumps({"cmcodec": cmcodec.__version__, "python": platform.python_version(),
                                      "images": [p.name for p in images], "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
