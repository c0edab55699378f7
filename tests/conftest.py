"""Shared fixtures: tiny random models (width 4, one residual block), small photos and masks.

Everything here is CPU-only and fast; the models are random, so tests assert structure
(shapes, ranges, unchanged pixels, errors), never image quality.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgefill.checkpoint import save_release
from edgefill.config import ModelConfig
from edgefill.networks import EdgeGenerator, InpaintGenerator
from edgefill.pipeline import Inpainter

TINY_CONFIG = ModelConfig(width=4, edge_blocks=1, inpaint_blocks=1)

# Tiny tensors gain nothing from intra-op threads, and on a busy machine OpenMP's spinning
# threads make them ~10x slower. EDGEFILL_TEST_THREADS=N overrides.
torch.set_num_threads(int(os.environ.get("EDGEFILL_TEST_THREADS", "1")))


def tiny_generators(seed: int = 0) -> tuple[EdgeGenerator, InpaintGenerator]:
    """Fresh tiny generators with reproducible random weights."""
    torch.manual_seed(seed)
    g1 = EdgeGenerator(TINY_CONFIG.width, TINY_CONFIG.edge_blocks)
    g2 = InpaintGenerator(TINY_CONFIG.width, TINY_CONFIG.inpaint_blocks)
    return g1, g2


def photo_array(h: int = 40, w: int = 52, seed: int = 0) -> np.ndarray:
    """A small synthetic photo (uint8 HxWx3): smooth gradient, two solid shapes, mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack(
        [xx / max(w - 1, 1), yy / max(h - 1, 1), 0.5 + 0.5 * np.sin((xx + yy) / 6.0)], axis=-1
    )
    img = img * 180 + 30
    img[h // 5 : h // 2, w // 6 : w // 2] = (230, 40, 40)
    img[h // 2 : 4 * h // 5, w // 2 : 5 * w // 6] = (30, 60, 220)
    img += rng.normal(0, 4, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def box_hole(h: int = 40, w: int = 52) -> np.ndarray:
    """A bool mask with a box hole in the middle (about 1/9 of the image)."""
    hole = np.zeros((h, w), bool)
    hole[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3] = True
    return hole


def load_repo_script(relpath: str) -> object:
    """A script of the repository (``benchmarks/x.py``, ``scripts/x.py``) imported as a module."""
    path = Path(__file__).resolve().parents[1] / relpath
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def spy_fill_hole(monkeypatch: pytest.MonkeyPatch, module: object) -> list[tuple[str, float]]:
    """Record (kind, edge_guide) of every ``fill_hole`` call made through ``module``."""
    calls: list[tuple[str, float]] = []
    real = module.fill_hole

    def spy(kind, rgb, hole, seed=0, edges=None, edge_guide=0.0, max_side=None):  # noqa: ANN001, ANN202
        calls.append((kind, edge_guide))
        return real(kind, rgb, hole, seed, edges, edge_guide, max_side)

    monkeypatch.setattr(module, "fill_hole", spy)
    return calls


@pytest.fixture(scope="session")
def tiny_config() -> ModelConfig:
    return TINY_CONFIG


@pytest.fixture(scope="session")
def inpainter() -> Inpainter:
    """A tiny random Inpainter built in memory (shared: inference only, never mutate it)."""
    g1, g2 = tiny_generators(0)
    return Inpainter.from_modules(g1, g2, TINY_CONFIG)


@pytest.fixture(scope="session")
def tiny_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A release folder (safetensors + config.json) with tiny random weights, fp16 as shipped."""
    g1, g2 = tiny_generators(0)
    out = tmp_path_factory.mktemp("release") / "tiny"
    return save_release(out, g1.state_dict(), g2.state_dict(), TINY_CONFIG)


@pytest.fixture
def make_photo() -> Callable[..., np.ndarray]:
    return photo_array


@pytest.fixture
def photo() -> np.ndarray:
    return photo_array(40, 52)


@pytest.fixture
def hole() -> np.ndarray:
    return box_hole(40, 52)


@pytest.fixture
def photo_files(tmp_path: Path) -> tuple[Path, Path]:
    """(photo.png, mask.png) on disk: 52x40 photo, box mask of the same size (white = hole)."""
    photo_path, mask_path = tmp_path / "photo.png", tmp_path / "mask.png"
    Image.fromarray(photo_array(40, 52)).save(photo_path)
    Image.fromarray(box_hole(40, 52).astype(np.uint8) * 255).save(mask_path)
    return photo_path, mask_path
