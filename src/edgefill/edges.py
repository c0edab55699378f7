"""Edges: the one Canny used everywhere (skimage's), and the known/predicted composite."""

from __future__ import annotations

import numpy as np
import torch
from skimage.color import rgb2gray
from skimage.feature import canny


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """uint8 or float RGB HxWx3 -> float32 HxW in [0, 1] (ITU-R 709 luma, as skimage)."""
    arr = rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float32)
    return rgb2gray(arr).astype(np.float32)


def canny_edges(gray: np.ndarray, hole: np.ndarray | None = None, sigma: float = 2.0) -> np.ndarray:
    """Canny edges (float32 {0, 1}) of a gray image, detected only on known pixels.

    skimage's ``mask`` argument restricts detection to the known region, so the hole's content
    never leaks into the edges; training, inference and evaluation all call this one function,
    which keeps their edge statistics identical (kornia/OpenCV Canny differ).
    """
    known = None if hole is None else ~hole.astype(bool)
    if gray.shape[0] < 3 or gray.shape[1] < 3:
        return np.zeros(gray.shape, np.float32)
    return canny(gray.astype(np.float64), sigma=sigma, mask=known).astype(np.float32)


def composite(known: torch.Tensor, predicted: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Known edges outside the hole, predicted ones inside (mask 1 = hole)."""
    return predicted * mask + known * (1 - mask)


def threshold(edges: torch.Tensor, value: float | None) -> torch.Tensor:
    """Binarise soft edge probabilities at ``value``; None returns them unchanged."""
    if value is None:
        return edges
    return (edges >= value).to(edges.dtype)
