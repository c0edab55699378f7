"""Inference: photo + mask -> predicted edges -> filled photo.

    inpainter = Inpainter.from_pretrained()          # the shipped default weights
    result = inpainter("photo.jpg", "mask.png")       # paths, PIL images or numpy arrays
    result.image                                      # uint8 HxWx3, outside the hole unchanged

Pixels outside the hole come back bit-identical: the network output is only pasted inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgefill.checkpoint import load_release
from edgefill.config import ModelConfig
from edgefill.edges import canny_edges, composite, threshold, to_gray
from edgefill.errors import EdgefillError
from edgefill.image import DEFAULT_MAX_PIXELS, ImageInput, load_rgb, save_image, to_tensor
from edgefill.masks import load_mask, mask_from_alpha
from edgefill.networks import EdgeGenerator, InpaintGenerator

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "default"
STRIDE = 4  # two stride-2 stages in each generator


@dataclass
class InpaintResult:
    image: np.ndarray  # uint8 HxWx3, the repaired photo
    edges: np.ndarray  # float32 HxW in [0, 1], composite edge map used for completion
    mask: np.ndarray  # bool HxW, the hole that was filled
    alpha: np.ndarray | None = None  # the photo's alpha channel, when it had one and kept it

    def save(self, path: str | Path) -> Path:
        arr = self.image if self.alpha is None else np.dstack([self.image, self.alpha])
        if self.alpha is not None and Path(path).suffix.lower() in (".jpg", ".jpeg"):
            arr = self.image  # JPEG has no alpha
        return save_image(path, arr)

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


def pad_to_stride(t: torch.Tensor, stride: int = STRIDE) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad H and W up to a multiple of ``stride`` (reflect where possible); returns the original size."""
    h, w = t.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    if ph or pw:
        mode = "reflect" if h > ph and w > pw else "replicate"
        t = F.pad(t, (0, pw, 0, ph), mode=mode)
    return t, (h, w)


class Inpainter:
    """The two-stage EdgeConnect model ready for inference (weights loaded once)."""

    def __init__(
        self,
        edge_generator: EdgeGenerator,
        inpaint_generator: InpaintGenerator,
        config: ModelConfig,
        device: str | torch.device = "cpu",
        info: dict | None = None,
    ):
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise EdgefillError(
                "device cuda requested but no CUDA GPU is available; use --device cpu"
            )
        self.config = config
        self.info = info or {}
        self.g1 = _bake_spectral_norm(edge_generator).to(self.device).eval().requires_grad_(False)
        self.g2 = inpaint_generator.to(self.device).eval().requires_grad_(False)

    @classmethod
    def from_pretrained(
        cls, path_or_name: str | Path | None = None, device: str | torch.device = "cpu"
    ) -> Inpainter:
        """Load a release folder (safetensors + config.json); None or 'default' = shipped weights."""
        g1, g2, cfg, doc = load_release(resolve_weights(path_or_name))
        return cls(g1, g2, cfg, device, doc)

    @classmethod
    def from_modules(
        cls,
        edge_generator: EdgeGenerator,
        inpaint_generator: InpaintGenerator,
        config: ModelConfig,
        device: str = "cpu",
    ) -> Inpainter:
        """Wrap already-built generators (e.g. tiny random ones in tests)."""
        return cls(edge_generator, inpaint_generator, config, device)

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
        rgb, alpha = load_rgb(image, max_pixels)
        h, w = rgb.shape[:2]
        if mask is None:
            if alpha is None:
                raise EdgefillError("no mask given and the photo has no transparency to use as one")
            return rgb, mask_from_alpha(alpha), None
        hole = load_mask(mask, (w, h), mask_threshold, resize_mask, max_pixels)
        return rgb, hole, alpha

    # -- model ----------------------------------------------------------------------

    @torch.inference_mode()
    def predict_edges(self, rgb: np.ndarray, hole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(known Canny edges, G1's edge probabilities), both float32 HxW."""
        gray = to_gray(rgb)
        known = canny_edges(gray, hole, self.config.canny_sigma)
        g = torch.from_numpy(gray)[None, None].to(self.device)
        m = torch.from_numpy(hole.astype(np.float32))[None, None].to(self.device)
        e = torch.from_numpy(known)[None, None].to(self.device)
        x = torch.cat([g * (1 - m) + m, e * (1 - m), m], 1)
        x, (h, w) = pad_to_stride(x)
        pred = self.g1(x)[..., :h, :w]
        pred = threshold(pred, self.config.edge_threshold)
        return known, pred[0, 0].float().cpu().numpy()

    @torch.inference_mode()
    def complete(self, rgb: np.ndarray, hole: np.ndarray, edges: np.ndarray) -> np.ndarray:
        """G2 on the masked photo and a composite edge map; returns the raw prediction uint8 HxWx3."""
        img = to_tensor(rgb).to(self.device)
        m = torch.from_numpy(hole.astype(np.float32))[None, None].to(self.device)
        e = torch.from_numpy(edges.astype(np.float32))[None, None].to(self.device)
        x, (h, w) = pad_to_stride(torch.cat([img * (1 - m) + m, e], 1))
        out = self.g2(x)[..., :h, :w]
        return (
            out[0]
            .float()
            .clamp(0, 1)
            .mul(255)
            .round()
            .to(torch.uint8)
            .permute(1, 2, 0)
            .cpu()
            .numpy()
        )

    def inpaint_arrays(
        self, rgb: np.ndarray, hole: np.ndarray, guide: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fill ``hole`` in ``rgb``; ``guide`` (float HxW in [0, 1]) replaces predicted edges in the hole.

        Returns (result uint8 HxWx3, composite edges float32 HxW).
        """
        if not hole.any():
            gray = to_gray(rgb)
            return rgb.copy(), canny_edges(gray, None, self.config.canny_sigma)
        known, pred = self.predict_edges(rgb, hole)
        if guide is not None:
            pred = guide.astype(np.float32)
        edges = composite(
            torch.from_numpy(known),
            torch.from_numpy(pred),
            torch.from_numpy(hole.astype(np.float32)),
        )
        edges_np = edges.numpy().astype(np.float32)
        filled = self.complete(rgb, hole, edges_np)
        result = np.where(hole[..., None], filled, rgb)
        return result, edges_np

    def __call__(
        self,
        image: ImageInput,
        mask: ImageInput | None = None,
        edges: ImageInput | None = None,
        resize_mask: bool = False,
        mask_threshold: int = 1,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> InpaintResult:
        """Inpaint ``image`` where ``mask`` is nonzero.

        ``edges``: an optional drawn edge map (white lines on black, or a float array in [0, 1])
        whose values replace the predicted edges inside the hole (user-guided structure).
        """
        rgb, hole, alpha = self.prepare(image, mask, resize_mask, mask_threshold, max_pixels)
        guide = None
        if edges is not None:
            guide = load_guide(edges, rgb.shape[1], rgb.shape[0], max_pixels)
        result, comp = self.inpaint_arrays(rgb, hole, guide)
        return InpaintResult(result, comp, hole, alpha)


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
