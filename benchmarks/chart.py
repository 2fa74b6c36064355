"""A PNG bar chart of the speed ratios in benchmarks/results/*.json (Pillow only).

One bar per measured item: minidl time / peer time (PyTorch CPU, and CuPy GPU when present);
bars left of 1.0 mean minidl is faster.

    python -m benchmarks.chart            # writes benchmarks/results/ratios.png
"""
from __future__ import annotations

import json

from PIL import Image, ImageDraw

from benchmarks._common import RESULTS


def collect() -> list[tuple[str, str, float]]:
    """(label, peer, ratio of minidl time to the peer's time) from the saved JSON files."""
    bars = []
    layers = RESULTS / "layers.json"
    if layers.is_file():
        for r in json.loads(layers.read_text())["results"]:
            if r.get("time_ratio_vs_torch"):
                bars.append((r["layer"], "torch CPU", r["time_ratio_vs_torch"]))
            if r.get("cupy_ms"):
                bars.append((r["layer"], "CuPy GPU", r["cupy_ms"] / r["numpy_ms"]))
    train = RESULTS / "train.json"
    if train.is_file():
        for r in json.loads(train.read_text())["results"]:
            if r.get("epoch_time_ratio_vs_torch"):
                bars.append((f"train {r['model']}", "torch CPU", r["epoch_time_ratio_vs_torch"]))
            if r.get("gpu_speedup"):
                bars.append((f"train {r['model']}", "CuPy GPU", 1 / r["gpu_speedup"]))
    sift = RESULTS / "sift.json"
    if sift.is_file():
        for r in json.loads(sift.read_text()).get("ratios", []):
            bars.append((r["label"], r["peer"], r["ratio"]))
    return bars


def draw(bars, path) -> None:
    row, left, width = 22, 330, 420
    top = 40
    vmax = max([2.0] + [b[2] for b in bars])
    img = Image.new("RGB", (left + width + 80, top + row * len(bars) + 40), "white")
    d = ImageDraw.Draw(img)
    d.text((10, 10), "minidl time / peer time  (< 1: minidl faster)", fill="black")
    x1 = left + width / vmax
    d.line([(x1, top - 5), (x1, top + row * len(bars))], fill="gray")
    d.text((x1 - 8, top + row * len(bars) + 5), "1.0", fill="gray")
    colours = {"torch CPU": (220, 110, 40), "CuPy GPU": (60, 140, 60)}
    for i, (label, peer, ratio) in enumerate(bars):
        y = top + i * row
        d.text((10, y + 4), f"{label} vs {peer}", fill="black")
        d.rectangle([left, y + 3, left + width * ratio / vmax, y + row - 3],
                    fill=colours.get(peer, (70, 100, 200)))
        d.text((left + width * ratio / vmax + 5, y + 4), f"{ratio:.2f}", fill="black")
    img.save(path)


def main():
    bars = collect()
    if not bars:
        print("no ratios found: run the benchmarks first (python -m benchmarks)")
        return
    path = RESULTS / "ratios.png"
    draw(bars, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
