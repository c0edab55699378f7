"""Helpers shared by the training tests: tiny photos, tiny configs, a random VGG16 weights file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from edgefill.config import Config, load_config
from edgefill.data import is_validation

VAL_FRACTION = 0.3

# width 8, one residual block, 32 px crops, batch 2, no VGG losses; validation on 32 px crops.
TINY = [
    "model.width=8",
    "model.edge_blocks=1",
    "model.inpaint_blocks=1",
    "data.crop_size=32",
    "data.val_count=2",
    f"data.val_fraction={VAL_FRACTION}",
    "train.batch_size=2",
    "train.threads=1",
    "train.log_every=1",
    "train.val_every=2",
    "train.sample_every=2",
    "train.save_every=2",
    "train.ema_decay=0.9",
    "loss.perceptual_weight=0",
    "loss.style_weight=0",
    "train.amp=fp32",  # the same numbers on every CPU (auto picks bf16 where it is native)
]


def tiny_config(*overrides: str) -> Config:
    return load_config(None, TINY + list(overrides))


def make_photos(folder: Path, n: int = 10, seed: int = 0) -> Path:
    """n synthetic 72x80 photos (gradients + a few rectangles: they have Canny edges)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:72, 0:80]
    for i in range(n):
        img = np.stack([(x * 3 + 10 * i) % 256, (y * 5) % 256, ((x + y) * 2) % 256], -1)
        img = img.astype(np.uint8)
        for _ in range(3):
            t, left = rng.integers(0, 50, 2)
            img[t : t + 20, left : left + 25] = rng.integers(0, 256, 3)
        Image.fromarray(img).save(folder / f"photo{i:02d}.png")
    names = sorted(folder.glob("*.png"))
    n_val = sum(is_validation(p, VAL_FRACTION) for p in names)
    assert 0 < n_val < len(names), "test photos must fall into both splits"
    return folder


def random_vgg(path: Path, seed: int = 0) -> Path:
    """A VGG16 + LPIPS weights file of the right shapes with random values (CI has no weights)."""
    from safetensors.torch import save_file

    from edgefill.vgg import VGG16Features

    torch.manual_seed(seed)
    sd = {k: v.contiguous() for k, v in VGG16Features().state_dict().items()}
    for k, c in enumerate((64, 128, 256, 512, 512)):
        sd[f"lin{k}.weight"] = torch.rand(1, c, 1, 1) / c
    save_file(sd, str(path))
    return path


def state_tensors(obj: object, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor inside a (nested) checkpoint dict/list, by dotted path."""
    out: dict[str, torch.Tensor] = {}
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(state_tensors(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(state_tensors(v, f"{prefix}.{i}"))
    return out
