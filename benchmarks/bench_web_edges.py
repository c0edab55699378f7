"""How long the web page waits for its edges: ``POST /api/edges`` against ``POST /api/inpaint``.

The bundled example (examples/astronaut.jpg and its mask) is scaled to 2400x2400 px (bicubic
photo, nearest-neighbour mask) and sent through the real app (FastAPI's TestClient, the shipped
default model) ``--repeat`` times per route; the median wall time of each request is reported.
For comparison it also times what ``/api/edges`` used to run: the edge generator on the whole
photo (``Inpainter.predict_edges``), called directly.

    nice -n 10 .venv/bin/python benchmarks/bench_web_edges.py --repeat 3 --json /tmp/edges.json

Results are in docs/web.md.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from fastapi.testclient import TestClient
from PIL import Image

from edgefill.pipeline import Inpainter
from edgefill.server import create_app

ROOT = Path(__file__).resolve().parents[1]


def example(size: int) -> tuple[bytes, bytes, np.ndarray, np.ndarray]:
    photo = Image.open(ROOT / "examples" / "astronaut.jpg").convert("RGB")
    mask = Image.open(ROOT / "examples" / "astronaut_mask.png").convert("L")
    photo = photo.resize((size, size), Image.BICUBIC)
    mask = mask.resize((size, size), Image.NEAREST)
    bufs = []
    for img in (photo, mask):
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        bufs.append(buf.getvalue())
    return bufs[0], bufs[1], np.asarray(photo), np.asarray(mask) > 0


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2400, help="photo side in px")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args(argv)

    inp = Inpainter.from_pretrained()
    photo, mask, rgb, hole = example(args.size)
    files = {"photo": ("photo.png", photo, "image/png"), "mask": ("mask.png", mask, "image/png")}
    results: dict[str, object] = {
        "photo": f"examples/astronaut.jpg scaled to {args.size}x{args.size}",
        "hole_fraction": round(float(hole.mean()), 4),
        "torch_threads": torch.get_num_threads(),
        "precision": inp.precision,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
    }
    with TestClient(create_app(inp)) as client:

        def post(route: str) -> None:
            r = client.post(route, files=files)
            assert r.status_code == 200, r.text

        post("/api/inpaint")  # warm-up: first-call allocations, oneDNN kernels
        for route in ("/api/edges", "/api/inpaint"):
            times = timed(lambda route=route: post(route), args.repeat)
            results[route] = {"median_s": round(statistics.median(times), 3), "runs_s": times}
            print(f"{route:14s} median {statistics.median(times):.2f} s  runs {times}")
    times = timed(lambda: inp.predict_edges(rgb, hole), max(1, args.repeat - 1))
    results["whole_photo_predict_edges"] = {
        "median_s": round(statistics.median(times), 3),
        "runs_s": times,
    }
    print(f"whole-photo predict_edges (the old /api/edges) median {statistics.median(times):.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
