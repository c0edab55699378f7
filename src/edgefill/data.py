"""Training data: photos from a folder or file list, split by name hash, cropped, flipped, masked.

Sampling is a pure function of (seed, step, position): a sample's crop, flip and mask come from
``numpy.random.default_rng([seed, epoch, index])``. That makes a resumed run see exactly the
batches an uninterrupted one would, with no sampler state to save, and works the same with
DataLoader workers and with distributed ranks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from edgefill.config import DataConfig
from edgefill.edges import canny_edges, composite, to_gray
from edgefill.errors import EdgefillError
from edgefill.image import HEIF_SUFFIXES, load_rgb, readable_suffixes, shrink_short_side
from edgefill.masks import generate_mask, load_mask
from edgefill.networks import edge_input
from edgefill.prefill import exemplar_fill, fill_hole

# Photo formats; AVIF and HEIC count only where Pillow reads them here (HEIC: the heif extra).
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".avif"}
IMAGE_SUFFIXES |= set(HEIF_SUFFIXES)


def photo_suffixes() -> set[str]:
    """The IMAGE_SUFFIXES this installation can read."""
    return IMAGE_SUFFIXES & readable_suffixes()


def list_images(source: str | Path) -> list[Path]:
    """Photos in a folder (recursively, sorted) or listed one per line in a text file."""
    src = Path(source)
    suffixes = photo_suffixes()
    if src.is_dir():
        files = sorted(p for p in src.rglob("*") if p.suffix.lower() in suffixes and p.is_file())
    elif src.is_file() and src.suffix.lower() in (".txt", ".lst", ".list"):
        base = src.parent
        lines = [ln.strip() for ln in src.read_text().splitlines()]
        files = [
            (base / ln) if not Path(ln).is_absolute() else Path(ln)
            for ln in lines
            if ln and not ln.startswith("#")
        ]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise EdgefillError(
                f"{src}: {len(missing)} listed photo(s) not found, e.g. {', '.join(missing[:3])}"
            )
    else:
        raise EdgefillError(f"{src}: expected a folder of photos or a .txt file list")
    if not files:
        raise EdgefillError(f"{src}: no photos found ({', '.join(sorted(suffixes))})")
    return files


def is_validation(path: str | Path, fraction: float) -> bool:
    """The split rule: sha1 of the file name (not the path) read as a fraction of 2**160."""
    digest = hashlib.sha1(Path(path).name.encode("utf-8")).hexdigest()
    return int(digest, 16) / 2**160 < fraction


def split(files: list[Path], fraction: float) -> tuple[list[Path], list[Path]]:
    train = [f for f in files if not is_validation(f, fraction)]
    val = [f for f in files if is_validation(f, fraction)]
    return train, val


def random_square_crop(
    rgb: np.ndarray,
    size: int,
    rng: np.random.Generator,
    min_scale: float,
    hflip: bool,
    max_scale: float = 1.0,
) -> np.ndarray:
    h, w = rgb.shape[:2]
    side = max(1, round(min(h, w) * rng.uniform(min_scale, max_scale)))
    top = int(rng.integers(0, h - side + 1))
    left = int(rng.integers(0, w - side + 1))
    crop = rgb[top : top + side, left : left + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    crop = cv2.resize(crop, (size, size), interpolation=interp)
    if hflip and rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)


def center_square(rgb: np.ndarray, size: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = rgb[top : top + side, left : left + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(crop, (size, size), interpolation=interp))


def _chw(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div(255.0)


def sample_edge_input(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """G1's input for a batch (``collate``) of ``make_sample`` tensors."""
    return edge_input(batch["gray"], batch["edges_known"], batch["mask"], batch.get("gray_g1"))


def make_sample(
    rgb: np.ndarray,
    hole: np.ndarray,
    sigma: float,
    hole_fill: str = "white",
    seed: int = 0,
    guide: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None,
    edge_guide: float = 0.0,
    edge_hole_fill: str = "white",
    exemplar: bool = False,
    thin_fsr: bool = True,
) -> dict[str, torch.Tensor]:
    """Tensors for one training example (CHW float32): image, gray, mask, edges_known,
    edges_full, edges_g2, filled (and exemplar).

    edges_known: Canny restricted to known pixels (what inference sees);
    edges_full: Canny of the whole photo (the edge generator's target, the 'ground-truth' edges);
    edges_g2: the composite edge map G2 gets: known edges outside the hole and, inside it, those
    ``guide`` returns for the sample (e.g. a frozen G1's prediction), else the true ones;
    filled: the photo with the hole pre-filled as G2 will see it (``model.hole_fill``; guided by
    edges_g2 with weight ``edge_guide`` when those are the true edges). Both are computed here,
    in the DataLoader workers. With ``edge_hole_fill`` other than "white" also gray_g1: the gray
    of the photo pre-filled (unguided) that way, what G1 sees in the hole (``sample_edge_input``).
    With ``exemplar`` also exemplar: ``prefill.exemplar_fill`` (the PatchMatch copy), guided as
    the ``patchmatch`` pre-fill would be (``model.exemplar``), with FSR on its thin parts
    unless ``thin_fsr`` is False (``train.thin_fsr``).
    """
    gray = to_gray(rgb)
    sample = {
        "image": _chw(rgb),
        "gray": torch.from_numpy(gray)[None],
        "mask": torch.from_numpy(hole.astype(np.float32))[None],
        "edges_known": torch.from_numpy(canny_edges(gray, hole, sigma))[None],
        "edges_full": torch.from_numpy(canny_edges(gray, None, sigma))[None],
    }
    g1_fill = None
    if edge_hole_fill != "white":
        g1_fill = fill_hole(edge_hole_fill, rgb, hole, seed)
        sample["gray_g1"] = torch.from_numpy(to_gray(g1_fill))[None]
    inside = sample["edges_full"] if guide is None else guide(sample)
    sample["edges_g2"] = composite(sample["edges_known"], inside, sample["mask"])
    # The pre-fill follows true edges (at inference: drawn ones), never predicted ones: guided
    # by the predicted edges of a small G1, PatchMatch did worse than unguided
    # (benchmarks/ablate_prefill.py, docs/model-card.md).
    weight = edge_guide if guide is None else 0.0
    edges = sample["edges_g2"][0].numpy()
    if g1_fill is not None and edge_hole_fill == hole_fill and weight == 0.0:
        filled = g1_fill  # the same unguided fill G1 got: not computed twice
    else:
        filled = fill_hole(hole_fill, rgb, hole, seed, edges, weight)
    sample["filled"] = _chw(filled)
    if exemplar:
        smooth = filled if hole_fill == "telea" else None  # computed once, not twice
        copy = exemplar_fill(rgb, hole, seed, edges, weight, None, smooth, thin_fsr)
        sample["exemplar"] = _chw(copy)
    return sample


class PhotoDataset(Dataset):
    """Random training crops. Items are addressed by (photo index, sample seed)."""

    def __init__(
        self,
        files: list[Path],
        cfg: DataConfig,
        sigma: float,
        cache: bool = True,
        hole_fill: str = "white",
        edge_guide: float = 0.0,
        edge_generator: torch.nn.Module | None = None,
        true_edge_prob: float = 0.0,
        edge_hole_fill: str = "white",
        exemplar: bool = False,
        thin_fsr: bool = True,
    ):
        """``edge_generator``: a frozen G1 whose predictions G2 gets inside the hole (stage
        inpaint-on-predicted), except for a ``true_edge_prob`` share of samples, which get the
        true edges; without it G2 always gets the true edges."""
        self.files = files
        self.cfg = cfg
        self.sigma = sigma
        self.hole_fill = hole_fill
        self.edge_guide = edge_guide
        self.edge_generator = edge_generator
        self.true_edge_prob = true_edge_prob
        self.edge_hole_fill = edge_hole_fill
        self.exemplar = exemplar
        self.thin_fsr = thin_fsr
        self.kinds = [k.strip() for k in cfg.mask_kinds.split(",")]
        weights = np.array([float(x) for x in cfg.mask_weights.split(",")])
        self.mask_p = weights / weights.sum()
        self.mask_files = sorted(list_images(cfg.mask_dir)) if cfg.mask_dir else None
        self._cache: dict[int, np.ndarray] = {}
        self.cache = cache

    def __len__(self) -> int:
        return len(self.files)

    def photo(self, index: int) -> np.ndarray:
        if index in self._cache:
            return self._cache[index]
        rgb, _ = load_rgb(self.files[index])
        # Keep at most 2x the crop size on the short side: crops are never larger than that.
        rgb = shrink_short_side(rgb, 2 * self.cfg.crop_size)
        if self.cache:
            self._cache[index] = rgb
        return rgb

    def mask(self, rng: np.random.Generator, size: int) -> np.ndarray:
        if self.mask_files:
            path = self.mask_files[int(rng.integers(len(self.mask_files)))]
            m = load_mask(path)
            m = cv2.resize(m.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0
            return m[:, ::-1].copy() if rng.random() < 0.5 else m
        kind = self.kinds[int(rng.choice(len(self.kinds), p=self.mask_p))]
        big = max(size, round(size * self.cfg.mask_scale))
        m = generate_mask(kind, big, big, rng)
        top, left = int(rng.integers(0, big - size + 1)), int(rng.integers(0, big - size + 1))
        return m[top : top + size, left : left + size]

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, seed = key
        rng = np.random.default_rng(seed)
        crop = random_square_crop(
            self.photo(index),
            self.cfg.crop_size,
            rng,
            self.cfg.min_crop_scale,
            self.cfg.hflip,
            self.cfg.max_crop_scale,
        )
        hole = self.mask(rng, self.cfg.crop_size)
        # Drawn last, so the crops and masks of a seed are those of runs without a pre-fill.
        fill_seed = int(rng.integers(2**31))
        guide = None
        if self.edge_generator is not None and rng.random() >= self.true_edge_prob:
            guide = self._predict_edges
        return make_sample(
            crop,
            hole,
            self.sigma,
            self.hole_fill,
            fill_seed,
            guide,
            self.edge_guide,
            self.edge_hole_fill,
            self.exemplar,
            self.thin_fsr,
        )

    @torch.no_grad()
    def _predict_edges(self, sample: dict[str, torch.Tensor]) -> torch.Tensor:
        assert self.edge_generator is not None
        x = sample_edge_input({k: v[None] for k, v in sample.items()})
        return self.edge_generator(x)[0].float()


class StepSampler(Sampler):
    """Yields (photo index, sample seed) for every sample from ``start_step`` on, endlessly.

    Epoch e uses permutation rng([seed, e]); rank r of ``world`` takes every world-th batch slot,
    so ranks see disjoint photos. The sequence depends only on (seed, step), never on history.
    """

    def __init__(
        self, n: int, batch_size: int, seed: int, start_step: int = 0, rank: int = 0, world: int = 1
    ):
        if n < 1:
            raise EdgefillError("training set is empty")
        self.n, self.batch, self.seed = n, batch_size, seed
        self.start, self.rank, self.world = start_step, rank, world

    def __len__(self) -> int:  # endless; DataLoader only needs this for progress estimates
        return 2**62

    def __iter__(self) -> Iterator[tuple[int, int]]:
        per_step = self.batch * self.world
        pos = self.start * per_step  # global sample position
        epoch_cached, perm = -1, np.arange(0)
        while True:
            epoch, offset = divmod(pos, self.n)
            if epoch != epoch_cached:
                perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
                epoch_cached = epoch
            step, slot = divmod(pos, per_step)
            if slot // self.batch == self.rank:
                yield (
                    int(perm[offset]),
                    int(np.random.default_rng([self.seed, 7, step, slot]).integers(2**62)),
                )
            pos += 1


def validation_samples(
    files: list[Path], size: int, sigma: float, seed: int = 1234, edge_hole_fill: str = "white"
) -> list[dict[str, torch.Tensor]]:
    """Fixed validation set: centre crops with fixed irregular masks cycling through the buckets."""
    out = []
    for i, f in enumerate(files):
        rng = np.random.default_rng([seed, i])
        low = 0.1 + 0.1 * (i % 5)
        rgb, _ = load_rgb(f)
        hole = generate_mask("irregular", size, size, rng, (low, low + 0.1))
        out.append(
            make_sample(center_square(rgb, size), hole, sigma, edge_hole_fill=edge_hole_fill)
        )
    return out


def collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}
