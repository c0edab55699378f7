"""Training throughput (images/s) of one iteration (G step + D step) per stage and precision.

    python benchmarks/bench_train.py                       # default and small model, fp32 and bf16
    python benchmarks/bench_train.py --configs small --amp bf16 --steps 5 --batch 8

Batches are prepared before timing (data loading is not included; it is a few ms per photo).
Two rates are printed: images per wall-clock second, and images per CPU second of this process
(``time.process_time``), which stays meaningful when other jobs share the cores. Without the
VGG16 weights in the cache a random VGG16 of the same shape is used (same cost).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from edgefill.config import load_config
from edgefill.data import collate
from edgefill.train import Trainer
from edgefill.vgg import default_vgg_path

CONFIGS = {
    # the reference architecture at its training resolution
    "default": [
        "model.width=64",
        "model.edge_blocks=8",
        "model.inpaint_blocks=8",
        "data.crop_size=256",
    ],
    # configs/cpu-small.yaml's architecture
    "small": [
        "model.width=32",
        "model.edge_blocks=4",
        "model.inpaint_blocks=4",
        "data.crop_size=128",
    ],
}


def synthetic_photos(folder: Path, n: int = 8, size: int = 320) -> Path:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size]
    for i in range(n):
        img = np.stack([(x + 9 * i) % 256, (y * 2) % 256, (x + y) % 256], -1).astype(np.uint8)
        for _ in range(6):
            t, left = rng.integers(0, size - 80, 2)
            img[t : t + 80, left : left + 60] = rng.integers(0, 256, 3)
        Image.fromarray(img).save(folder / f"p{i}.png")
    return folder


def random_vgg(path: Path) -> Path:
    from safetensors.torch import save_file

    from edgefill.vgg import VGG16Features

    sd = {k: v.contiguous() for k, v in VGG16Features().state_dict().items()}
    for k, c in enumerate((64, 128, 256, 512, 512)):
        sd[f"lin{k}.weight"] = torch.rand(1, c, 1, 1) / c
    save_file(sd, str(path))
    return path


def bench(
    cfg_name: str, stage: str, amp: str, args: argparse.Namespace, tmp: Path, vgg: Path
) -> dict:
    overrides = CONFIGS[cfg_name] + [
        f"train.amp={amp}",
        f"train.batch_size={args.batch}",
        f"train.threads={args.threads}",
        f"loss.vgg_weights={vgg}",
        "data.val_fraction=0",
    ]
    cfg = load_config(None, overrides)
    t = Trainer(cfg, stage, str(args.data), tmp / f"{cfg_name}-{stage}-{amp}", show_progress=False)
    t.lpips = None
    n = len(t.dataset)
    batches = [
        collate([t.dataset[((s * args.batch + i) % n, s * 1000 + i)] for i in range(args.batch)])
        for s in range(args.steps + 1)
    ]
    t.train_step(batches[0])  # warm-up (allocations, oneDNN kernel selection)
    wall, cpu = time.perf_counter(), time.process_time()
    for b in batches[1:]:
        t.train_step(b)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    images = args.steps * args.batch
    return {
        "config": cfg_name,
        "stage": stage,
        "amp": amp,
        "batch": args.batch,
        "steps": args.steps,
        "s_per_step": round(wall / args.steps, 2),
        "img_per_s": round(images / wall, 3),
        "img_per_cpu_s": round(images / cpu, 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--configs", default="default,small")
    p.add_argument("--stages", default="edge,inpaint")
    p.add_argument("--amp", default="fp32,bf16")
    p.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up step")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", type=Path, help="photo folder (default: synthetic 320 px photos)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp_str:
        tmp = Path(tmp_str)
        if args.data is None:
            (tmp / "photos").mkdir()
            args.data = synthetic_photos(tmp / "photos")
        vgg = default_vgg_path() if default_vgg_path().is_file() else random_vgg(tmp / "vgg.st")
        for cfg_name in args.configs.split(","):
            for stage in args.stages.split(","):
                for amp in args.amp.split(","):
                    row = bench(cfg_name, stage, amp, args, tmp, vgg)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    env = {
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "python": sys.version.split()[0],
    }
    print("\n| model | stage | precision | batch | s/step | img/s (wall) | img/s per CPU s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['config']} | {r['stage']} | {r['amp']} | {r['batch']} | {r['s_per_step']} "
            f"| {r['img_per_s']} | {r['img_per_cpu_s']} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"env": env, "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
