"""Inference: photo + mask -> predicted edges -> filled photo.

    inpainter = Inpainter.from_pretrained()          # the shipped default weights
    result = inpainter("photo.jpg", "mask.png")       # paths, PIL images or numpy arrays
    result.image                                      # uint8 HxWx3, outside the hole unchanged

Pixels outside the hole come back bit-identical: the network output is only pasted inside it.

High-resolution strategies (``hd_strategy``):

- ``crop`` (default): each connected hole region (grown by a few pixels) gets a context window
  (its own longest side in px on each side, between HD_MIN_MARGIN and ``hd_margin``, and at
  least half that side: a dust spot gets 32 px, a large hole 128); overlapping windows are
  merged while the merged window still fits ``working_size`` (nearby holes share a window, far
  apart ones keep their own native-resolution windows, which may overlap: each fills only the
  holes it holds deepest). A window larger than ``working_size`` is downscaled for the networks,
  its fill upscaled, and the detail finer than the reduced grid copied back from the photo by
  patch matching (``detail.restore_detail``); only hole pixels are pasted back. A photo that fits
  the working size and whose windows would cover most of it is processed whole, like ``original``.
- ``resize``: the whole photo is downscaled to ``working_size`` (if larger), filled, and the
  fill upscaled (with its detail restored as above) and pasted inside the hole.
- ``original``: the whole photo at full size, as the reference EdgeConnect code does (slow and
  memory-hungry on large photos).

Backends and precisions (``backend``, ``precision``): ``torch`` runs fp32, bf16 (CPU with AMX or
AVX512-BF16, and CUDA) or fp16 (CUDA); ``auto`` picks bf16 where the hardware has it, else fp32.
``onnx`` runs an ONNX export (fp32) with ONNX Runtime on the CPU. docs/performance.md has the
measurements and tolerances.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from edgefill.backends import Engine, check_backend, make_engine, resolve_precision, stoppable
from edgefill.checkpoint import (
    load_drawn_generator,
    load_release,
    named_generators,
    resolve_weights,
)
from edgefill.config import (
    DEFAULT_HD_MARGIN,
    DEFAULT_MAX_PIXELS,
    DEFAULT_WORKING_SIZE,
    FLIP_AVERAGES,
    HD_STRATEGIES,
    ModelConfig,
)
from edgefill.detail import restore_detail
from edgefill.edges import canny_edges, composite, threshold, to_gray
from edgefill.errors import EdgefillError, check_stop
from edgefill.image import (
    ImageInput,
    ImageMeta,
    Photo,
    compose_deep,
    grey_fill,
    known_is_neutral,
    load_rgb,
    save_image,
    to_tensor,
)
from edgefill.masks import load_photo_and_mask, prepare_inputs, upright_if_stored
from edgefill.networks import (
    EdgeGenerator,
    InpaintGenerator,
    edge_input,
    fuse_for_inference,
    inpaint_input,
)
from edgefill.onnx_export import exported_files
from edgefill.prefill import PATCHMATCH_MAX_SIDE, exemplar_fill, fill_hole, thin_parts

STRIDE = 4  # two stride-2 stages in each generator
MIN_SIDE = 16  # smaller inputs leave the residual blocks' reflection padding too little to pad

HOLE_GROW = 4  # hole regions closer than about twice this many pixels share a window
# A small hole needs little context: its window margin is this many times its longest side (at
# least HD_MIN_MARGIN px, at most hd_margin). Big margins around dust made windows 10x too large.
HD_MARGIN_PER_SIZE = 1.0
HD_MIN_MARGIN = 32
WHOLE_IMAGE_FRACTION = 0.6  # crop: windows covering this much of a photo that fits -> whole photo

Box = tuple[int, int, int, int]  # top, left, bottom, right (bottom/right exclusive)


@dataclass
class InpaintResult:
    image: np.ndarray  # uint8 HxWx3, the repaired photo (a 16-bit one's 8-bit view: split_deep)
    edges: np.ndarray  # float32 HxW in [0, 1], composite edge map used for completion
    mask: np.ndarray  # bool HxW, the hole that was filled
    alpha: np.ndarray | None = None  # the photo's alpha channel, when it had one and kept it
    # The photo's own 16-bit samples (outside the hole they are written back unchanged) and its
    # ICC profile / EXIF / DPI, kept on every output.
    deep: np.ndarray | None = None
    meta: ImageMeta | None = None

    def output_array(self) -> np.ndarray:
        """What ``save`` writes: 16-bit where the photo was, with its alpha where it was kept."""
        if self.deep is not None:
            return compose_deep(self.deep, self.image, self.mask, keep_alpha=self.alpha is not None)
        return self.image if self.alpha is None else np.dstack([self.image, self.alpha])

    def save(self, path: str | Path, quality: int | None = None) -> Path:
        return save_image(path, self.output_array(), quality, self.meta)

    def save_edges(self, path: str | Path) -> Path:
        """Edges as white lines on black: the same convention ``edges=`` / ``--edges`` reads back."""
        return save_image(path, np.round(self.edges * 255).astype(np.uint8))


def pad_to_stride(t: torch.Tensor, stride: int = STRIDE) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad H and W up to a multiple of ``stride`` (reflect where possible); returns the original size."""
    h, w = t.shape[-2:]
    ph, pw = max((-h) % stride, MIN_SIDE - h), max((-w) % stride, MIN_SIDE - w)
    if ph or pw:
        mode = "reflect" if h > ph and w > pw else "replicate"
        t = F.pad(t, (0, pw, 0, ph), mode=mode)
    return t, (h, w)


# ----------------------------------------------------------------------------- windows


def _fit(lo: int, hi: int, n: int) -> tuple[int, int]:
    """Move [lo, hi) inside [0, n) keeping its length where possible (context on the far side)."""
    size = min(hi - lo, n)
    lo = min(max(lo, 0), n - size)
    return lo, lo + size


def _longest(box: Box) -> int:
    return max(box[2] - box[0], box[3] - box[1])


def merge_boxes(boxes: list[Box], limit: int | None = None) -> list[Box]:
    """Union boxes that overlap (share at least one pixel) until none do; sorted top-left first.

    With ``limit``, two overlapping boxes that both fit ``limit`` px (longest side) are merged
    only if their union fits too: holes near each other share one native-resolution window, but
    far-apart ones are never pulled into a window so large that it has to be downscaled (their
    windows may then overlap; each fills only its own holes). Boxes already larger than
    ``limit`` (run downscaled anyway) merge with whatever they overlap.
    """
    out = [tuple(b) for b in boxes]
    changed = True
    while changed:
        changed = False
        merged: list[Box] = []
        for box in out:
            t, lf, b, r = box
            i = 0
            while i < len(merged):
                mt, ml, mb, mr = merged[i]
                union = (min(t, mt), min(lf, ml), max(b, mb), max(r, mr))
                fits = limit is None or _longest(union) <= limit
                big = (
                    limit is not None and max(_longest((t, lf, b, r)), _longest(merged[i])) > limit
                )
                if t < mb and mt < b and lf < mr and ml < r and (fits or big):
                    t, lf, b, r = min(t, mt), min(lf, ml), max(b, mb), max(r, mr)
                    merged.pop(i)
                    changed = True
                else:
                    i += 1
            merged.append((t, lf, b, r))
        out = merged
    return sorted(out)  # type: ignore[arg-type]


def hole_windows(
    hole: np.ndarray,
    margin: int = DEFAULT_HD_MARGIN,
    grow: int = HOLE_GROW,
    context: float = 0.5,
    limit: int | None = None,
    per_size: float = HD_MARGIN_PER_SIZE,
    min_margin: int = HD_MIN_MARGIN,
) -> list[Box]:
    """Context windows for the crop strategy, as (top, left, bottom, right) boxes.

    Connected regions of the hole grown by ``grow`` px (8-connectivity) each get their bounding
    box plus ``max(min(margin, max(min_margin, per_size * L)), context * L)`` px on every side,
    L the region's longest side (small holes get less context than ``margin``); a box that
    would leave the photo is shifted back inside (keeping its size, so border holes still get
    their context) and clipped only if larger than the photo. Overlapping windows are merged
    (with ``limit``: only while the merged window still fits it, see ``merge_boxes``).
    """
    h, w = hole.shape
    if not hole.any():
        return []
    src = hole.astype(np.uint8)
    if grow > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        src = cv2.dilate(src, kernel)
    n, _, stats, _ = cv2.connectedComponentsWithStats(src, connectivity=8)
    boxes: list[Box] = []
    for x, y, bw, bh, _area in stats[1:n]:
        longest = max(bw, bh)
        pad = max(
            min(int(margin), max(min_margin, math.ceil(per_size * longest))),
            math.ceil(context * longest),
        )
        t, b = _fit(int(y) - pad, int(y + bh) + pad, h)
        lf, r = _fit(int(x) - pad, int(x + bw) + pad, w)
        boxes.append((t, lf, b, r))
    return merge_boxes(boxes, limit)


def plan_windows(
    hole: np.ndarray, strategy: str, margin: int, working_size: int
) -> list[tuple[Box, tuple[int, int]]]:
    """The windows an HD strategy processes, each with the (height, width) the networks see."""
    if strategy not in HD_STRATEGIES:
        raise EdgefillError(
            f"hd_strategy must be one of {', '.join(HD_STRATEGIES)}, got {strategy!r}"
        )
    if working_size < 16:
        raise EdgefillError(f"working_size must be at least 16 px, got {working_size}")
    h, w = hole.shape
    whole: Box = (0, 0, h, w)
    if strategy in ("original", "resize"):
        boxes = [whole]
    else:
        boxes = hole_windows(hole, margin, limit=working_size)
        covered = sum((b - t) * (r - lf) for t, lf, b, r in boxes)
        if max(h, w) <= working_size and covered >= WHOLE_IMAGE_FRACTION * h * w:
            boxes = [whole]
    plan = []
    for box in boxes:
        bh, bw = box[2] - box[0], box[3] - box[1]
        limit = max(bh, bw) if strategy == "original" else working_size
        scale = min(1.0, limit / max(bh, bw))
        plan.append((box, (max(1, round(bh * scale)), max(1, round(bw * scale)))))
    return plan


def window_owners(hole: np.ndarray, boxes: list[Box]) -> np.ndarray:
    """For each pixel, the index of the window that fills it (int32 HxW; -1 outside the hole).

    Windows may overlap (``merge_boxes`` with a limit); a hole pixel belongs to the window that
    holds it deepest inside (the most context around it; a side on the photo's border counts as
    deep), so every hole pixel is written exactly once.
    """
    h, w = hole.shape
    owner = np.full((h, w), -1, np.int32)
    if len(boxes) == 1:
        t, lf, b, r = boxes[0]
        owner[t:b, lf:r][hole[t:b, lf:r]] = 0
        return owner
    best = np.full((h, w), -1.0, np.float32)
    for i, (t, lf, b, r) in enumerate(boxes):
        yy = np.arange(t, b, dtype=np.float32)[:, None]
        xx = np.arange(lf, r, dtype=np.float32)[None, :]
        far = float(max(h, w))
        depth = np.minimum(
            np.minimum(yy - t if t > 0 else far, b - 1 - yy if b < h else far),
            np.minimum(xx - lf if lf > 0 else far, r - 1 - xx if r < w else far),
        )
        # A window spanning the photo's whole height or width leaves that term a scalar.
        depth = np.broadcast_to(depth, (b - t, r - lf))
        inside = hole[t:b, lf:r] & (depth > best[t:b, lf:r])
        best[t:b, lf:r][inside] = depth[inside]
        owner[t:b, lf:r][inside] = i
    return owner


def given_edges(rgb: np.ndarray, hole: np.ndarray, inside: np.ndarray, sigma: float) -> np.ndarray:
    """Composite edge map whose hole part is given, not predicted by G1 (drawn edges, or the
    Canny edges of a fill that needed no network): the photo's known Canny edges outside the
    hole (bool HxW), ``inside`` (float HxW) inside it; float32 HxW."""
    known = canny_edges(to_gray(rgb), hole, sigma)
    return np.where(hole, inside, known).astype(np.float32)


def _window_inputs(
    rgb: np.ndarray, hole: np.ndarray, guide: np.ndarray | None, box: Box, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(photo, hole) of a window at full size and (photo, hole, guide) at the size the networks
    see: downscaled with area interpolation for the photo and max-pooling for hole and lines."""
    t, lf, b, r = box
    rgb_w, hole_w = rgb[t:b, lf:r], hole[t:b, lf:r]
    guide_w = None if guide is None else guide[t:b, lf:r]
    if size == hole_w.shape:
        return rgb_w, hole_w, np.ascontiguousarray(rgb_w), hole_w, guide_w
    sh, sw = size
    rgb_s = cv2.resize(rgb_w, (sw, sh), interpolation=cv2.INTER_AREA)
    guide_s = None if guide_w is None else _shrink_max(guide_w, size)
    return rgb_w, hole_w, rgb_s, _shrink_max(hole_w, size) > 0, guide_s


def _shrink_max(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Downscale a mask or edge map keeping every hole pixel and line: adaptive max pooling.

    Each output pixel is the max over every source pixel it overlaps (at least the support of
    cv2.INTER_AREA), so no hole pixel leaks into the known part of the downscaled photo.
    """
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None, None]
    return F.adaptive_max_pool2d(t, size)[0, 0].numpy()


# ----------------------------------------------------------------------------- inpainter


class Inpainter:
    """The two-stage EdgeConnect model ready for inference (weights loaded once).

    Options (keyword arguments; per-call overrides exist for the HD ones):
    ``backend`` torch | onnx, ``precision`` auto | fp32 | bf16 | fp16 (see the module doc),
    ``hd_strategy`` crop | resize | original, ``hd_margin`` (px), ``working_size`` (px),
    ``threads`` (CPU threads for torch and ONNX Runtime; None keeps torch's default: one per core),
    ``onnx_models`` ({'edge': path-or-bytes, 'inpaint': ...}; None exports in memory on load),
    ``drawn_generator`` (a second G2 that fills holes whose edges were drawn; ``complete``),
    ``flip_average`` drawn | always | none: when G2 also fills the mirrored inputs and the two
    fills are averaged (``complete``; default: for drawn edges only).
    """

    def __init__(
        self,
        edge_generator: EdgeGenerator,
        inpaint_generator: InpaintGenerator,
        config: ModelConfig,
        device: str | torch.device = "cpu",
        info: dict | None = None,
        *,
        backend: str = "torch",
        precision: str = "fp32",
        hd_strategy: str = "crop",
        hd_margin: int = DEFAULT_HD_MARGIN,
        working_size: int = DEFAULT_WORKING_SIZE,
        threads: int | None = None,
        onnx_models: dict[str, bytes | str | Path] | None = None,
        drawn_generator: InpaintGenerator | None = None,
        flip_average: str = FLIP_AVERAGES[0],
    ):
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise EdgefillError(
                "device cuda requested but no CUDA GPU is available; use --device cpu"
            )
        check_backend(backend)
        if backend == "onnx" and self.device.type != "cpu":
            raise EdgefillError("the onnx backend runs on the CPU; use --backend torch on a GPU")
        if hd_strategy not in HD_STRATEGIES:
            raise EdgefillError(
                f"hd_strategy must be one of {', '.join(HD_STRATEGIES)}, got {hd_strategy!r}"
            )
        if flip_average not in FLIP_AVERAGES:
            raise EdgefillError(
                f"flip_average must be one of {', '.join(FLIP_AVERAGES)}, got {flip_average!r}"
            )
        if hd_margin < 0 or working_size < 16:
            raise EdgefillError("hd_margin must be >= 0 and working_size >= 16")
        if threads is not None and threads > 0:
            torch.set_num_threads(threads)
        self.config = config
        self.info = info or {}
        self.hd_strategy, self.hd_margin, self.working_size = hd_strategy, hd_margin, working_size
        self.flip_average = flip_average
        self.g1 = fuse_for_inference(edge_generator).to(self.device).eval().requires_grad_(False)
        self.g2 = fuse_for_inference(inpaint_generator).to(self.device).eval().requires_grad_(False)
        self.g2_drawn = None
        if drawn_generator is not None:
            self.g2_drawn = fuse_for_inference(drawn_generator).to(self.device).eval()
            self.g2_drawn.requires_grad_(False)
        self.precision = resolve_precision(precision, self.device, backend)
        self.backend = backend
        self.engine: Engine = make_engine(
            backend,
            self.g1,
            self.g2,
            self.device,
            self.precision,
            threads,
            onnx_models,
            self.g2_drawn,
        )

    @classmethod
    def from_pretrained(
        cls,
        path_or_name: str | Path | None = None,
        device: str | torch.device = "cpu",
        *,
        precision: str = "auto",
        backend: str = "torch",
        **options: Any,
    ) -> Inpainter:
        """Load a release folder (safetensors + config.json); None or 'default' = shipped weights.

        With ``backend='onnx'`` the folder's ``edge.onnx`` / ``inpaint.onnx`` (written by
        ``edgefill export-onnx``) are used when present (an error when they were exported from
        other weights or settings), else the generators are exported on load.
        """
        path = resolve_weights(path_or_name)
        g1, g2, cfg, doc = load_release(path)
        drawn = load_drawn_generator(path, cfg)
        if backend == "onnx" and "onnx_models" not in options:
            options["onnx_models"] = exported_files(path, named_generators(g1, g2, drawn))
        return cls(
            g1,
            g2,
            cfg,
            device,
            doc,
            precision=precision,
            backend=backend,
            drawn_generator=drawn,
            **options,
        )

    @classmethod
    def from_modules(
        cls,
        edge_generator: EdgeGenerator,
        inpaint_generator: InpaintGenerator,
        config: ModelConfig,
        device: str = "cpu",
        **options: Any,
    ) -> Inpainter:
        """Wrap already-built generators (e.g. tiny random ones in tests); fp32 unless told."""
        return cls(edge_generator, inpaint_generator, config, device, **options)

    # -- inputs -------------------------------------------------------------------

    def prepare(
        self,
        image: ImageInput,
        mask: ImageInput | None = None,
        resize_mask: bool = False,
        mask_threshold: int = 1,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        grow_mask: int = 0,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(RGB uint8, hole bool, alpha to keep or None): ``masks.load_photo_and_mask``."""
        return load_photo_and_mask(image, mask, resize_mask, mask_threshold, max_pixels, grow_mask)

    def prepare_photo(
        self,
        image: ImageInput | Photo,
        mask: ImageInput | None = None,
        resize_mask: bool = False,
        mask_threshold: int = 1,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        grow_mask: int = 0,
    ) -> tuple[Photo, np.ndarray, bool]:
        """As ``prepare`` but with the whole loaded photo (16-bit samples, metadata) and whether
        its alpha is kept (False when the transparency is the hole): ``masks.prepare_inputs``."""
        return prepare_inputs(image, mask, resize_mask, mask_threshold, max_pixels, grow_mask)

    # -- model (whole image as given) ---------------------------------------------------

    @torch.inference_mode()
    def predict_edges(self, rgb: np.ndarray, hole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(known Canny edges, G1's edge probabilities), both float32 HxW, on the whole image."""
        gray = to_gray(rgb)
        known = canny_edges(gray, hole, self.config.canny_sigma)
        g = torch.from_numpy(gray)[None, None]
        m = torch.from_numpy(hole.astype(np.float32))[None, None]
        e = torch.from_numpy(known)[None, None]
        hole_gray = None
        if self.config.edge_hole_fill != "white":
            fill = fill_hole(self.config.edge_hole_fill, rgb, hole, max_side=PATCHMATCH_MAX_SIDE)
            hole_gray = torch.from_numpy(to_gray(fill))
            hole_gray = hole_gray[None, None]
        pred = self._generate("edge", edge_input(g, e, m, hole_gray))
        pred = threshold(pred, self.config.edge_threshold)
        return known, pred[0, 0].cpu().numpy()

    def exemplar_copy(
        self,
        rgb: np.ndarray,
        hole: np.ndarray,
        drawn_edges: np.ndarray | None = None,
        prefilled: np.ndarray | None = None,
    ) -> np.ndarray:
        """The copy a ``model.exemplar`` G2 blends with (``prefill.exemplar_fill``, uint8 HxWx3),
        following ``drawn_edges`` (``model.edge_guide``) when edges were drawn, as in training.
        ``prefilled``: this hole's ``prefill``, reused on thin parts when it is the smooth one."""
        weight = self.config.edge_guide if drawn_edges is not None else 0.0
        smooth = prefilled if self.config.hole_fill == "telea" else None
        return exemplar_fill(rgb, hole, 0, drawn_edges, weight, PATCHMATCH_MAX_SIDE, smooth)

    def prefill(
        self,
        rgb: np.ndarray,
        hole: np.ndarray,
        edges: np.ndarray | None = None,
        drawn: bool = False,
    ) -> np.ndarray:
        """The photo with the hole pre-filled as G2 gets it (``model.hole_fill``, uint8 HxWx3);
        ``edges`` guide a PatchMatch pre-fill only when ``drawn``, as in training."""
        weight = self.config.edge_guide if drawn else 0.0
        return fill_hole(self.config.hole_fill, rgb, hole, 0, edges, weight, PATCHMATCH_MAX_SIDE)

    def _prefill_and_copy(
        self, rgb: np.ndarray, hole: np.ndarray, thin: bool
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """``exemplar_copy`` without drawn edges: the work of the copy thread. A hole with
        ``thin`` parts needs the smooth ``prefill`` for the copy too, so it is computed here once
        and returned; otherwise (None) the main thread makes it after G1, beside the copy."""
        filled = self.prefill(rgb, hole) if thin else None
        return filled, self.exemplar_copy(rgb, hole, None, filled)

    def complete(
        self,
        rgb: np.ndarray,
        hole: np.ndarray,
        edges: np.ndarray,
        drawn: bool = False,
        copy: np.ndarray | None = None,
        filled: np.ndarray | None = None,
    ) -> np.ndarray:
        """G2 on the masked photo and a composite edge map; returns the raw prediction uint8 HxWx3
        (with a ``model.exemplar`` G2: the copy itself on the hole's thin parts).

        ``drawn``: the edges inside the hole were given (drawn by a user), not predicted; only
        then does the PatchMatch pre-fill follow them (``model.edge_guide``), as in training,
        and a release's G2 for drawn edges (``checkpoint.attach_drawn``) runs instead of its
        own G2. With ``flip_average`` (by default for drawn edges) G2 also fills the mirrored
        inputs and the two fills are averaged: a two-member ensemble for the cost of one more G2
        run, small beside the guided copy that drawn edges need (docs/model-card.md, session 40).
        ``copy``, ``filled``: the ``exemplar_copy`` of a ``model.exemplar`` G2 and the
        ``prefill``, when already computed.
        """
        cfg = self.config
        if filled is None:
            filled = self.prefill(rgb, hole, edges, drawn)
        if cfg.exemplar and copy is None:
            copy = self.exemplar_copy(rgb, hole, edges if drawn else None, filled)
        filled_t = to_tensor(filled)
        copy_t = None if copy is None else to_tensor(copy)
        m = torch.from_numpy(hole.astype(np.float32))[None, None]
        e = torch.from_numpy(edges.astype(np.float32, copy=False))[None, None]
        x = inpaint_input(filled_t, m, e, cfg.hole_fill, copy_t)
        net = "inpaint_drawn" if drawn and self.g2_drawn is not None else "inpaint"
        out = self._generate(net, x)
        if self.flip_average == "always" or (self.flip_average == "drawn" and drawn):
            out = (out + self._generate(net, x.flip(-1)).flip(-1)) / 2
        pred = out[0].clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        if copy is None:
            return pred
        # Thin hole parts (scratches) take the copy as it is: G2 never trained on them, and its
        # share there raised LPIPS by 4 % on 43 training photos (model card, session 13).
        return np.where(thin_parts(hole)[..., None], copy, pred)

    def _generate(self, net: str, x: torch.Tensor) -> torch.Tensor:
        """A generator's output for the unpadded input ``x`` (padded for it, cropped back)."""
        padded, (h, w) = pad_to_stride(x)
        return check_finite(
            self.engine(net, padded)[..., :h, :w], "edge" if net == "edge" else "image"
        )

    def _edges(self, rgb: np.ndarray, hole: np.ndarray, guide: np.ndarray | None) -> np.ndarray:
        """Composite edge map (known outside the hole, predicted or guided inside) of one image."""
        if guide is not None:  # drawn edges replace G1's inside the hole: G1 need not run
            return given_edges(rgb, hole, guide, self.config.canny_sigma)
        known, pred = self.predict_edges(rgb, hole)
        return composite(
            torch.from_numpy(known),
            torch.from_numpy(pred),
            torch.from_numpy(hole.astype(np.float32)),
        ).numpy()

    # -- windows -------------------------------------------------------------------------

    def _options(
        self, hd_strategy: str | None, hd_margin: int | None, working_size: int | None
    ) -> tuple[str, int, int]:
        return (
            self.hd_strategy if hd_strategy is None else hd_strategy,
            self.hd_margin if hd_margin is None else hd_margin,
            self.working_size if working_size is None else working_size,
        )

    def _run_windows(
        self,
        rgb: np.ndarray,
        hole: np.ndarray,
        guide: np.ndarray | None,
        strategy: str,
        margin: int,
        working_size: int,
        fill: bool,
        stop: threading.Event | None = None,
    ) -> tuple[np.ndarray | None, np.ndarray]:
        hole = hole.astype(bool, copy=False)  # any nonzero value is the hole
        h, w = hole.shape
        result = rgb.copy() if fill else None
        edges = np.zeros((h, w), np.float32)  # stays zero outside the windows
        plan = plan_windows(hole, strategy, margin, working_size)
        owner = window_owners(hole, [box for box, _ in plan])
        # Without drawn edges the PatchMatch copy of an exemplar G2 does not depend on G1's
        # edges: it runs beside G1 (the library is C code and releases the GIL).
        early = fill and self.config.exemplar and guide is None
        with (
            ThreadPoolExecutor(1) if early else contextlib.nullcontext() as pool,
            stoppable(stop),
        ):
            try:
                return self._fill_windows(rgb, hole, guide, plan, owner, result, edges, pool, stop)
            except BaseException:  # stopped or failed: the copies not started yet are dropped
                if pool is not None:
                    pool.shutdown(wait=False, cancel_futures=True)
                raise

    @contextlib.contextmanager
    def _core_for_copy(self, copying: bool) -> Iterator[None]:
        """While the PatchMatch copy runs in its thread, G1 leaves it one core: the copy is the
        longer of the two, and torch threads that share a core with it wait at every barrier
        (docs/performance.md, session 12). Torch's thread count is restored after."""
        threads = torch.get_num_threads()
        if not copying or threads < 2 or self.backend != "torch" or self.device.type != "cpu":
            yield
            return
        torch.set_num_threads(threads - 1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)

    def _fill_windows(
        self,
        rgb: np.ndarray,
        hole: np.ndarray,
        guide: np.ndarray | None,
        plan: list[tuple[Box, tuple[int, int]]],
        owner: np.ndarray,
        result: np.ndarray | None,
        edges: np.ndarray,
        pool: ThreadPoolExecutor | None,
        stop: threading.Event | None = None,
    ) -> tuple[np.ndarray | None, np.ndarray]:
        inputs = [_window_inputs(rgb, hole, guide, box, size) for box, size in plan]
        thins = [thin_parts(x[3]) for x in inputs] if pool is not None else [None] * len(inputs)
        # Every window's copy is queued at once: the copy thread works through them while this
        # thread runs the networks, so a window that needs no network does not wait for its copy.
        jobs: list[Future | None] = [
            None if pool is None else pool.submit(self._prefill_and_copy, x[2], x[3], thin.any())
            for x, thin in zip(inputs, thins, strict=True)
        ]
        for i, (
            ((t, lf, b, r), _),
            (rgb_w, hole_w, rgb_s, hole_s, guide_s),
            early,
            thin,
        ) in enumerate(zip(plan, inputs, jobs, thins, strict=True)):
            wh, ww = hole_w.shape
            sh, sw = hole_s.shape
            # A hole of thin parts only (scratches, hairs) takes the copy as it is (``complete``):
            # neither G1 nor G2 has to run, and the edge map inside it is the copy's own edges.
            copy_only = thin is not None and bool(thin[hole_s].all())
            check_stop(stop)
            if copy_only:
                sigma = self.config.canny_sigma
                fill_lines = canny_edges(to_gray(early.result()[1]), None, sigma)
                comp = given_edges(rgb_s, hole_s, fill_lines, sigma)
            else:
                with self._core_for_copy(early is not None):
                    comp = self._edges(rgb_s, hole_s, guide_s)
            if (sh, sw) != (wh, ww):
                edges[t:b, lf:r] = cv2.resize(comp, (ww, wh), interpolation=cv2.INTER_LINEAR)
            else:
                edges[t:b, lf:r] = comp
            if result is None:
                continue
            check_stop(stop)  # before waiting for this window's copy
            if early is None:
                prefilled, copy = None, None
            elif thin.any():
                prefilled, copy = early.result()
            else:  # the pre-fill is this thread's: made while the copy may still be running
                prefilled, copy = self.prefill(rgb_s, hole_s), early.result()[1]
            if copy_only:
                filled = copy
            else:
                filled = self.complete(rgb_s, hole_s, comp, guide is not None, copy, prefilled)
            if (sh, sw) != (wh, ww):
                # Upscale the small result with its known pixels around the hole (no dark halo).
                small = np.where(hole_s[..., None], filled, rgb_s)
                filled = cv2.resize(small, (ww, wh), interpolation=cv2.INTER_CUBIC)
                # ... and the detail finer than the reduced grid copied back from the photo.
                filled = restore_detail(
                    rgb_w, hole_w, filled, small, hole_s, workers=torch.get_num_threads()
                )
            region = result[t:b, lf:r]
            # Only this window's hole pixels are written (cv2.copyTo: ~15x faster than
            # np.copyto(where=)); other holes inside it were holes to the networks too.
            mine = owner[t:b, lf:r] == i
            out = cv2.copyTo(np.ascontiguousarray(filled), mine.view(np.uint8), region)
            if out is not region:  # the binding copied the view instead of writing through it
                region[...] = out
        return result, edges

    def _run(
        self,
        rgb: np.ndarray,
        hole: np.ndarray,
        guide: np.ndarray | None,
        options: tuple[str | None, int | None, int | None],
        fill: bool,
        stop: threading.Event | None = None,
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """``_run_windows`` with the per-call HD ``options``; a photo without a hole comes back
        as it is, with the Canny edges of the whole photo."""
        if not hole.any():
            edges = canny_edges(to_gray(rgb), None, self.config.canny_sigma)
            return (rgb.copy() if fill else None), edges
        strategy, margin, size = self._options(*options)
        return self._run_windows(rgb, hole, guide, strategy, margin, size, fill, stop)

    def inpaint_arrays(
        self,
        rgb: np.ndarray,
        hole: np.ndarray,
        guide: np.ndarray | None = None,
        *,
        hd_strategy: str | None = None,
        hd_margin: int | None = None,
        working_size: int | None = None,
        stop: threading.Event | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fill ``hole`` in ``rgb``; ``guide`` (float HxW in [0, 1]) replaces predicted edges in the hole.

        Returns (result uint8 HxWx3, composite edges float32 HxW). Pixels outside the hole are
        copied unchanged; where they are all grey, the fill is made grey too (``grey_fill``).
        With the crop strategy the edge map is zero outside the context windows (nothing was
        computed there); inside a downscaled window it is the window's map upscaled.
        ``stop``: set from another thread to give the call up; it then raises ``Stopped`` before
        its next network pass, or with the torch backend at the next layer of the pass running
        (the web server, when its client has gone).
        """
        options = (hd_strategy, hd_margin, working_size)
        result, edges = self._run(rgb, hole, guide, options, fill=True, stop=stop)
        assert result is not None
        hole = hole.astype(bool, copy=False)  # as _run reads it: any nonzero value
        if known_is_neutral(rgb, hole):  # a black-and-white photo gets a grey fill, not a tint
            result = grey_fill(result, hole)
        return result, edges

    def edge_map(
        self,
        rgb: np.ndarray,
        hole: np.ndarray,
        guide: np.ndarray | None = None,
        *,
        hd_strategy: str | None = None,
        hd_margin: int | None = None,
        working_size: int | None = None,
        stop: threading.Event | None = None,
    ) -> np.ndarray:
        """The composite edge map ``inpaint_arrays`` would use (runs the edge generator only)."""
        options = (hd_strategy, hd_margin, working_size)
        return self._run(rgb, hole, guide, options, fill=False, stop=stop)[1]

    def __call__(
        self,
        image: ImageInput,
        mask: ImageInput | None = None,
        edges: ImageInput | None = None,
        resize_mask: bool = False,
        mask_threshold: int = 1,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        *,
        grow_mask: int = 0,
        hd_strategy: str | None = None,
        hd_margin: int | None = None,
        working_size: int | None = None,
    ) -> InpaintResult:
        """Inpaint ``image`` where ``mask`` is nonzero.

        ``edges``: an optional drawn edge map (white lines on black, or a float array in [0, 1])
        whose values replace the predicted edges inside the hole (user-guided structure).
        ``grow_mask``: widen the hole by this many pixels first (a mask from a segmentation
        model or a quick brush often stops at the object's edge, leaving its outline and soft
        shadow); drawn edges apply to the widened hole. ``hd_strategy`` / ``hd_margin`` /
        ``working_size`` override the inpainter's settings.
        """
        photo, hole, keep_alpha = self.prepare_photo(
            image, mask, resize_mask, mask_threshold, max_pixels, grow_mask
        )
        rgb = photo.rgb
        guide = None
        if edges is not None:
            h, w = rgb.shape[:2]
            guide = load_guide(edges, w, h, max_pixels, photo.meta.orientation)
        result, comp = self.inpaint_arrays(
            rgb,
            hole,
            guide,
            hd_strategy=hd_strategy,
            hd_margin=hd_margin,
            working_size=working_size,
        )
        alpha = photo.alpha if keep_alpha else None
        return InpaintResult(result, comp, hole, alpha, photo.deep, photo.meta)


def check_finite(t: torch.Tensor, which: str) -> torch.Tensor:
    """Broken weights (NaN or inf) would silently paint the hole black: refuse instead."""
    if not bool(torch.isfinite(t).all()):
        raise EdgefillError(
            f"the {which} generator produced NaN or infinite values: the model weights are "
            "broken (re-export or re-download them)"
        )
    return t


def load_guide(
    src: ImageInput,
    width: int,
    height: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    orientation: int = 1,
) -> np.ndarray:
    """A user edge map as float32 HxW in [0, 1] (1 = edge); must match the photo's size, or
    its stored pixels' when the photo's EXIF ``orientation`` turned it (then turned as the
    photo was: ``masks.made_on_stored_pixels``)."""
    if isinstance(src, np.ndarray) and np.issubdtype(src.dtype, np.floating) and src.ndim == 2:
        arr = src.astype(np.float32)
        if not np.isfinite(arr).all() or arr.min(initial=0) < 0 or arr.max(initial=0) > 1:
            raise EdgefillError("edge map arrays must be finite and in [0, 1]")
    else:
        rgb, _ = load_rgb(src, max_pixels)
        arr = to_gray(rgb)
    arr = upright_if_stored(arr, (width, height), orientation)
    if arr.shape != (height, width):
        raise EdgefillError(
            f"edge map is {arr.shape[1]}x{arr.shape[0]} but the photo is {width}x{height}"
        )
    return arr
