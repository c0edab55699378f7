"""Inference: photo + mask -> predicted edges -> filled photo.

    inpainter = Inpainter.from_pretrained()          # the shipped default weights
    result = inpainter("photo.jpg", "mask.png")       # paths, PIL images or numpy arrays
    result.image                                      # uint8 HxWx3, outside the hole unchanged

Pixels outside the hole come back bit-identical: the network output is only pasted inside it.

High-resolution strategies (``hd_strategy``):

- ``crop`` (default): each connected hole region (grown by a few pixels) gets a context window
  (``hd_margin`` px on each side, at least half the region's size); overlapping windows are merged;
  a window larger than ``working_size`` is downscaled for the networks and only its filled hole
  pixels are upscaled and pasted back. A photo that fits the working size and whose windows
  would cover most of it is processed whole, exactly like ``original``.
- ``resize``: the whole photo is downscaled to ``working_size`` (if larger), filled, and the
  fill upscaled and pasted inside the hole.
- ``original``: the whole photo at full size, as the reference EdgeConnect code does (slow and
  memory-hungry on large photos).

Backends and precisions (``backend``, ``precision``): ``torch`` runs fp32, bf16 (CPU with AMX or
AVX512-BF16, and CUDA) or fp16 (CUDA); ``auto`` picks bf16 where the hardware has it, else fp32.
``onnx`` runs an ONNX export (fp32) with ONNX Runtime on the CPU. docs/performance.md has the
measurements and tolerances.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgefill.checkpoint import load_release
from edgefill.config import ModelConfig
from edgefill.edges import canny_edges, composite, threshold, to_gray
from edgefill.errors import EdgefillError
from edgefill.image import (
    DEFAULT_MAX_PIXELS,
    ImageInput,
    ImageMeta,
    Photo,
    compose_deep,
    load_photo,
    load_rgb,
    save_image,
    to_tensor,
)
from edgefill.masks import load_mask, mask_from_alpha
from edgefill.networks import EdgeGenerator, InpaintGenerator, edge_input, inpaint_input
from edgefill.onnx_export import ONNX_FILES
from edgefill.prefill import fill_hole

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "default"
STRIDE = 4  # two stride-2 stages in each generator
MIN_SIDE = 16  # smaller inputs leave the residual blocks' reflection padding too little to pad

HD_STRATEGIES = ("crop", "resize", "original")
BACKENDS = ("torch", "onnx")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEFAULT_HD_MARGIN = 128  # context pixels around each hole region (crop strategy)
DEFAULT_WORKING_SIZE = 512  # longest side the networks see in the crop and resize strategies
HOLE_GROW = 4  # hole regions closer than about twice this many pixels share a window
WHOLE_IMAGE_FRACTION = 0.6  # crop: windows covering this much of a photo that fits -> whole photo

Box = tuple[int, int, int, int]  # top, left, bottom, right (bottom/right exclusive)


@dataclass
class InpaintResult:
    image: np.ndarray  # uint8 HxWx3, the repaired photo
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


def resolve_weights(path_or_name: str | Path | None) -> Path:
    if path_or_name is None or str(path_or_name) == "default":
        path = DEFAULT_WEIGHTS
        if not (path / "config.json").is_file():
            raise EdgefillError(
                f"the default model weights are missing ({path}). Reinstall edgefill from a full checkout, "
                "pass --weights DIR (a folder made by `edgefill export`), or train a model: see docs/training.md"
            )
        return path
    path = Path(path_or_name)
    if not path.exists():
        raise EdgefillError(
            f"weights not found: {path} (expected a folder made by `edgefill export`)"
        )
    return path


def _bake_spectral_norm(net: nn.Module) -> nn.Module:
    """Replace spectral-norm reparametrisation by its (fixed, eval-mode) weight: faster inference."""
    for m in net.modules():
        if hasattr(m, "weight_orig"):
            torch.nn.utils.remove_spectral_norm(m)
    return net


class FastInstanceNorm(nn.Module):
    """Instance norm without affine parameters or running statistics, computed as a group norm
    with one channel per group: the same numbers (to float rounding), but ATen's group-norm kernel
    is 1.3-3x faster on the CPU than instance norm (which copies to a (1, N*C, H, W) batch norm),
    especially for channels-last and bf16 tensors. ONNX export writes a plain InstanceNormalization.
    """

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            return F.instance_norm(x, eps=self.eps)
        return F.group_norm(x, x.shape[1], eps=self.eps)


def fuse_for_inference(net: nn.Module) -> nn.Module:
    """In place: bake spectral norm and swap plain InstanceNorm2d for FastInstanceNorm.

    Parameter names and values are unchanged (neither norm has parameters), so state dicts and
    release files are unaffected; fp32 outputs match the original module to ~1e-6.
    """
    _bake_spectral_norm(net)
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if (
                isinstance(child, nn.InstanceNorm2d)
                and not child.affine
                and not child.track_running_stats
            ):
                setattr(parent, name, FastInstanceNorm(child.eps))
    return net


def pad_to_stride(t: torch.Tensor, stride: int = STRIDE) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad H and W up to a multiple of ``stride`` (reflect where possible); returns the original size."""
    h, w = t.shape[-2:]
    ph, pw = max((-h) % stride, MIN_SIDE - h), max((-w) % stride, MIN_SIDE - w)
    if ph or pw:
        mode = "reflect" if h > ph and w > pw else "replicate"
        t = F.pad(t, (0, pw, 0, ph), mode=mode)
    return t, (h, w)


# ----------------------------------------------------------------------------- hardware


def cpu_has_fast_bf16() -> bool:
    """True when the CPU runs bf16 convolutions natively (AMX tiles or AVX512-BF16)."""
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(torch.cpu, probe, None)
        try:
            if fn is not None and fn():
                return True
        except Exception:  # pragma: no cover - probes are private API
            continue
    return False


def resolve_precision(precision: str, device: torch.device, backend: str = "torch") -> str:
    """'auto' -> the fastest precision whose quality is verified for this device and backend."""
    if precision not in PRECISIONS:
        raise EdgefillError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if backend == "onnx":
        if precision not in ("auto", "fp32"):
            raise EdgefillError("the onnx backend runs fp32 only; use --precision fp32 or auto")
        return "fp32"
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if device.type == "cpu" and cpu_has_fast_bf16() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise EdgefillError("fp16 needs a CUDA GPU; on the CPU use bf16 or fp32")
    return precision


_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# ----------------------------------------------------------------------------- engines


class LowPrecisionGenerator(nn.Module):
    """A generator run in bf16/fp16 except its last conv and activation, which stay fp32.

    The last conv has only 1-3 output channels (about 2 % of the FLOPs) but decides the output's
    rounding: in fp32 the result keeps full 8-bit precision instead of bf16's ~1/256 steps.
    """

    def __init__(self, net: nn.Module, dtype: torch.dtype, memory_format: torch.memory_format):
        super().__init__()
        decoder = net.decoder
        body = nn.Sequential(net.encoder, net.middle, *list(decoder)[:-1])
        self.body = copy.deepcopy(body).to(dtype=dtype, memory_format=memory_format)
        self.head = copy.deepcopy(decoder[-1]).float()
        self.dtype = dtype
        self.activate = net.activate  # the generator's own output function, in fp32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x in fp32: a pre-filled G2 adds its correction to the fp32 input, not a bf16 copy."""
        return self.activate(self.head(self.body(x.to(self.dtype)).float()), x.float())


class TorchEngine:
    """Runs the generators with torch in a chosen precision; inputs and outputs are float32."""

    name = "torch"

    def __init__(self, g1: nn.Module, g2: nn.Module, device: torch.device, precision: str = "fp32"):
        self.device, self.precision = device, precision
        self.dtype = _DTYPES[precision]
        # oneDNN (and cuDNN) run these convolutions faster on NHWC tensors: on the benchmark CPU
        # 1.2x in fp32 and 1.5x in bf16 (docs/performance.md, ablation).
        low = self.dtype != torch.float32
        self.memory_format = torch.channels_last
        self.nets: dict[str, nn.Module] = {}
        for k, net in (("edge", g1), ("inpaint", g2)):
            if low and all(hasattr(net, a) for a in ("encoder", "middle", "decoder")):
                net = LowPrecisionGenerator(net, self.dtype, self.memory_format)
            elif low:  # an unknown module: run it all in low precision (a copy; g1/g2 stay fp32)
                net = copy.deepcopy(net).to(dtype=self.dtype)
            self.nets[k] = net.to(device=device, memory_format=self.memory_format)

    def __call__(self, which: str, x: torch.Tensor) -> torch.Tensor:
        net = self.nets[which]
        dtype = torch.float32 if isinstance(net, LowPrecisionGenerator) else self.dtype
        x = x.to(self.device, dtype, non_blocking=True).contiguous(memory_format=self.memory_format)
        return net(x).float()


class OnnxEngine:
    """Runs ONNX exports of the generators with ONNX Runtime (CPU, fp32)."""

    name = "onnx"
    precision = "fp32"

    def __init__(self, models: dict[str, bytes | str | Path], threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise EdgefillError(
                "the onnx backend needs onnxruntime: pip install 'edgefill[onnx]'"
            ) from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Memory patterns pre-plan one big block per input shape; window sizes vary, and without
        # them the arena reuses buffers: lower peak RSS (about -15 % at 512 px), no slower.
        opts.enable_mem_pattern = False
        self.sessions = {}
        for k, src in models.items():
            data = str(src) if isinstance(src, Path) else src
            self.sessions[k] = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        self.inputs = {k: s.get_inputs()[0].name for k, s in self.sessions.items()}

    def __call__(self, which: str, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().float().cpu().numpy())
        out = self.sessions[which].run(None, {self.inputs[which]: arr})[0]
        return torch.from_numpy(out)


# ----------------------------------------------------------------------------- windows


def _fit(lo: int, hi: int, n: int) -> tuple[int, int]:
    """Move [lo, hi) inside [0, n) keeping its length where possible (context on the far side)."""
    size = min(hi - lo, n)
    lo = min(max(lo, 0), n - size)
    return lo, lo + size


def merge_boxes(boxes: list[Box]) -> list[Box]:
    """Union boxes that overlap (share at least one pixel) until none do; sorted top-left first."""
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
                if t < mb and mt < b and lf < mr and ml < r:
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
) -> list[Box]:
    """Context windows for the crop strategy, as (top, left, bottom, right) boxes.

    Connected regions of the hole grown by ``grow`` px (8-connectivity) each get their bounding
    box plus ``max(margin, context * longest side of the region)`` px on every side; a box that
    would leave the photo is shifted back inside (keeping its size, so border holes still get
    their context) and clipped only if larger than the photo. Overlapping windows are merged.
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
        pad = max(int(margin), math.ceil(context * max(bw, bh)))
        t, b = _fit(int(y) - pad, int(y + bh) + pad, h)
        lf, r = _fit(int(x) - pad, int(x + bw) + pad, w)
        boxes.append((t, lf, b, r))
    return merge_boxes(boxes)


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
        boxes = hole_windows(hole, margin)
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
    ``onnx_models`` ({'edge': path-or-bytes, 'inpaint': ...}; None exports in memory on load).
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
    ):
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise EdgefillError(
                "device cuda requested but no CUDA GPU is available; use --device cpu"
            )
        if backend not in BACKENDS:
            raise EdgefillError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if backend == "onnx" and self.device.type != "cpu":
            raise EdgefillError("the onnx backend runs on the CPU; use --backend torch on a GPU")
        if hd_strategy not in HD_STRATEGIES:
            raise EdgefillError(
                f"hd_strategy must be one of {', '.join(HD_STRATEGIES)}, got {hd_strategy!r}"
            )
        if hd_margin < 0 or working_size < 16:
            raise EdgefillError("hd_margin must be >= 0 and working_size >= 16")
        if threads is not None and threads > 0:
            torch.set_num_threads(threads)
        self.config = config
        self.info = info or {}
        self.hd_strategy, self.hd_margin, self.working_size = hd_strategy, hd_margin, working_size
        self.g1 = fuse_for_inference(edge_generator).to(self.device).eval().requires_grad_(False)
        self.g2 = fuse_for_inference(inpaint_generator).to(self.device).eval().requires_grad_(False)
        self.precision = resolve_precision(precision, self.device, backend)
        self.backend = backend
        self.engine: TorchEngine | OnnxEngine
        if backend == "onnx":
            if onnx_models is None:
                from edgefill.onnx_export import export_generators

                onnx_models = dict(export_generators(self.g1, self.g2))
            self.engine = OnnxEngine(onnx_models, threads)
        else:
            self.engine = TorchEngine(self.g1, self.g2, self.device, self.precision)

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
        ``edgefill export-onnx``) are used when present, else the generators are exported on load.
        """
        path = resolve_weights(path_or_name)
        g1, g2, cfg, doc = load_release(path)
        if backend == "onnx" and "onnx_models" not in options:
            files = {k: path / f for k, f in ONNX_FILES.items()}
            if all(p.is_file() for p in files.values()):
                options["onnx_models"] = files
        return cls(g1, g2, cfg, device, doc, precision=precision, backend=backend, **options)

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
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(RGB uint8, hole bool, alpha to keep or None) from any supported inputs.

        Without a mask, an RGBA photo's transparent pixels are the hole (and the result is
        opaque). With a mask, the photo's alpha channel is kept as it was.
        """
        photo, hole, keep_alpha = self.prepare_photo(
            image, mask, resize_mask, mask_threshold, max_pixels
        )
        return photo.rgb, hole, photo.alpha if keep_alpha else None

    def prepare_photo(
        self,
        image: ImageInput | Photo,
        mask: ImageInput | None = None,
        resize_mask: bool = False,
        mask_threshold: int = 1,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> tuple[Photo, np.ndarray, bool]:
        """As ``prepare`` but with the whole loaded photo (16-bit samples, metadata) and whether
        its alpha is kept (False when the transparency is the hole)."""
        return prepare_inputs(image, mask, resize_mask, mask_threshold, max_pixels)

    # -- model (whole image as given) ---------------------------------------------------

    @torch.inference_mode()
    def predict_edges(self, rgb: np.ndarray, hole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(known Canny edges, G1's edge probabilities), both float32 HxW, on the whole image."""
        gray = to_gray(rgb)
        known = canny_edges(gray, hole, self.config.canny_sigma)
        g = torch.from_numpy(gray)[None, None]
        m = torch.from_numpy(hole.astype(np.float32))[None, None]
        e = torch.from_numpy(known)[None, None]
        x = edge_input(g, e, m)
        x, (h, w) = pad_to_stride(x)
        pred = check_finite(self.engine("edge", x)[..., :h, :w], "edge")
        pred = threshold(pred, self.config.edge_threshold)
        return known, pred[0, 0].cpu().numpy()

    @torch.inference_mode()
    def complete(
        self, rgb: np.ndarray, hole: np.ndarray, edges: np.ndarray, drawn: bool = False
    ) -> np.ndarray:
        """G2 on the masked photo and a composite edge map; returns the raw prediction uint8 HxWx3.

        ``drawn``: the edges inside the hole were given (drawn by a user), not predicted; only
        then does the PatchMatch pre-fill follow them (``model.edge_guide``), as in training.
        """
        cfg = self.config
        weight = cfg.edge_guide if drawn else 0.0
        filled = to_tensor(fill_hole(cfg.hole_fill, rgb, hole, 0, edges, weight))
        m = torch.from_numpy(hole.astype(np.float32))[None, None]
        e = torch.from_numpy(edges.astype(np.float32, copy=False))[None, None]
        x, (h, w) = pad_to_stride(inpaint_input(filled, m, e, self.config.hole_fill))
        out = check_finite(self.engine("inpaint", x)[..., :h, :w], "image")
        return out[0].clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(1, 2, 0).cpu().numpy()

    def _edges(self, rgb: np.ndarray, hole: np.ndarray, guide: np.ndarray | None) -> np.ndarray:
        """Composite edge map (known outside the hole, predicted or guided inside) of one image."""
        known, pred = self.predict_edges(rgb, hole)
        if guide is not None:
            pred = guide.astype(np.float32)
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
    ) -> tuple[np.ndarray | None, np.ndarray]:
        hole = hole.astype(bool, copy=False)  # any nonzero value is the hole
        h, w = hole.shape
        result = rgb.copy() if fill else None
        edges = np.zeros((h, w), np.float32)  # stays zero outside the windows
        for (t, lf, b, r), (sh, sw) in plan_windows(hole, strategy, margin, working_size):
            rgb_w, hole_w = rgb[t:b, lf:r], hole[t:b, lf:r]
            guide_w = None if guide is None else guide[t:b, lf:r]
            wh, ww = hole_w.shape
            if (sh, sw) != (wh, ww):  # downscale: area for the photo, max-pool for hole and lines
                rgb_s = cv2.resize(rgb_w, (sw, sh), interpolation=cv2.INTER_AREA)
                hole_s = _shrink_max(hole_w, (sh, sw)) > 0
                guide_s = None if guide_w is None else _shrink_max(guide_w, (sh, sw))
            else:
                rgb_s, hole_s, guide_s = np.ascontiguousarray(rgb_w), hole_w, guide_w
            comp = self._edges(rgb_s, hole_s, guide_s)
            if (sh, sw) != (wh, ww):
                edges[t:b, lf:r] = cv2.resize(comp, (ww, wh), interpolation=cv2.INTER_LINEAR)
            else:
                edges[t:b, lf:r] = comp
            if result is None:
                continue
            filled = self.complete(rgb_s, hole_s, comp, drawn=guide is not None)
            if (sh, sw) != (wh, ww):
                # Upscale the small result with its known pixels around the hole (no dark halo).
                small = np.where(hole_s[..., None], filled, rgb_s)
                filled = cv2.resize(small, (ww, wh), interpolation=cv2.INTER_CUBIC)
            region = result[t:b, lf:r]
            # Only hole pixels are written (cv2.copyTo: ~15x faster than np.copyto(where=)).
            out = cv2.copyTo(np.ascontiguousarray(filled), hole_w.view(np.uint8), region)
            if out is not region:  # the binding copied the view instead of writing through it
                region[...] = out
        return result, edges

    def inpaint_arrays(
        self,
        rgb: np.ndarray,
        hole: np.ndarray,
        guide: np.ndarray | None = None,
        *,
        hd_strategy: str | None = None,
        hd_margin: int | None = None,
        working_size: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fill ``hole`` in ``rgb``; ``guide`` (float HxW in [0, 1]) replaces predicted edges in the hole.

        Returns (result uint8 HxWx3, composite edges float32 HxW). Pixels outside the hole are
        copied unchanged. With the crop strategy the edge map is zero outside the context windows
        (nothing was computed there); inside a downscaled window it is the window's map upscaled.
        """
        if not hole.any():
            gray = to_gray(rgb)
            return rgb.copy(), canny_edges(gray, None, self.config.canny_sigma)
        strategy, margin, size = self._options(hd_strategy, hd_margin, working_size)
        result, edges = self._run_windows(rgb, hole, guide, strategy, margin, size, fill=True)
        assert result is not None
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
    ) -> np.ndarray:
        """The composite edge map ``inpaint_arrays`` would use (runs the edge generator only)."""
        if not hole.any():
            return canny_edges(to_gray(rgb), None, self.config.canny_sigma)
        strategy, margin, size = self._options(hd_strategy, hd_margin, working_size)
        return self._run_windows(rgb, hole, guide, strategy, margin, size, fill=False)[1]

    def __call__(
        self,
        image: ImageInput,
        mask: ImageInput | None = None,
        edges: ImageInput | None = None,
        resize_mask: bool = False,
        mask_threshold: int = 1,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        *,
        hd_strategy: str | None = None,
        hd_margin: int | None = None,
        working_size: int | None = None,
    ) -> InpaintResult:
        """Inpaint ``image`` where ``mask`` is nonzero.

        ``edges``: an optional drawn edge map (white lines on black, or a float array in [0, 1])
        whose values replace the predicted edges inside the hole (user-guided structure).
        ``hd_strategy`` / ``hd_margin`` / ``working_size`` override the inpainter's settings.
        """
        photo, hole, keep_alpha = self.prepare_photo(
            image, mask, resize_mask, mask_threshold, max_pixels
        )
        rgb = photo.rgb
        guide = None
        if edges is not None:
            guide = load_guide(edges, rgb.shape[1], rgb.shape[0], max_pixels)
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


def prepare_inputs(
    image: ImageInput | Photo,
    mask: ImageInput | None = None,
    resize_mask: bool = False,
    mask_threshold: int = 1,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[Photo, np.ndarray, bool]:
    """(photo, hole bool HxW, keep the photo's alpha) from any supported inputs; needs no model.

    Without a mask, an RGBA photo's transparent pixels are the hole (and the result is opaque).
    With a mask, the photo's alpha channel is kept as it was."""
    photo = image if isinstance(image, Photo) else load_photo(image, max_pixels)
    h, w = photo.rgb.shape[:2]
    if mask is None:
        if photo.alpha is None:
            raise EdgefillError("no mask given and the photo has no transparency to use as one")
        return photo, mask_from_alpha(photo.alpha), False
    return photo, load_mask(mask, (w, h), mask_threshold, resize_mask, max_pixels), True


def check_finite(t: torch.Tensor, which: str) -> torch.Tensor:
    """Broken weights (NaN or inf) would silently paint the hole black: refuse instead."""
    if not bool(torch.isfinite(t).all()):
        raise EdgefillError(
            f"the {which} generator produced NaN or infinite values: the model weights are "
            "broken (re-export or re-download them)"
        )
    return t


def load_guide(
    src: ImageInput, width: int, height: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """A user edge map as float32 HxW in [0, 1] (1 = edge); must match the photo's size."""
    if isinstance(src, np.ndarray) and np.issubdtype(src.dtype, np.floating) and src.ndim == 2:
        arr = src.astype(np.float32)
        if not np.isfinite(arr).all() or arr.min(initial=0) < 0 or arr.max(initial=0) > 1:
            raise EdgefillError("edge map arrays must be finite and in [0, 1]")
    else:
        rgb, _ = load_rgb(src, max_pixels)
        arr = to_gray(rgb)
    if arr.shape != (height, width):
        raise EdgefillError(
            f"edge map is {arr.shape[1]}x{arr.shape[0]} but the photo is {width}x{height}"
        )
    return arr
