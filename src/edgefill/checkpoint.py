"""Training checkpoints (self-describing, atomic) and release weights (safetensors + JSON).

A checkpoint holds only tensors and plain Python values, so it loads with
``torch.load(weights_only=True)``: a pickle that tries to run code is refused.
A release is ``edge.safetensors`` + ``inpaint.safetensors`` + ``config.json`` and loads with
the networks module alone (no training code).
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgefill.config import ModelConfig, check_model_config
from edgefill.errors import EdgefillError
from edgefill.image import remove_stale_temps, temp_path
from edgefill.networks import EdgeGenerator, InpaintGenerator

RELEASE_FORMAT = 1
EDGE_FILE, INPAINT_FILE, CONFIG_FILE = "edge.safetensors", "inpaint.safetensors", "config.json"


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """torch.save to a temp file in the same folder, fsync, then os.replace: never a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)  # left by a run that was killed mid-save
    _remove_old_style_temps(path.parent)
    tmp = temp_path(path)
    try:
        with open(tmp, "xb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _remove_old_style_temps(folder: Path, min_age_s: float = 3600) -> None:
    """Temp files of versions before per-process temp names (``.tmp-XXXX.pt``, from mkstemp),
    removed once clearly abandoned."""
    import time

    for tmp in folder.glob(".tmp-*.pt"):
        try:
            if time.time() - tmp.stat().st_mtime > min_age_s:
                tmp.unlink()
        except OSError:
            pass


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a training checkpoint safely (weights_only=True); clear error if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise EdgefillError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch warns about legacy/raw pickles on stderr first
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" not in str(exc).lower():
            raise EdgefillError(f"{path}: not a readable checkpoint ({_one_line(exc)})") from None
        # torch's message spans paragraphs and suggests weights_only=False: keep only the reason.
        reason = next(
            (ln.strip() for ln in str(exc).splitlines() if "unsupported" in ln.lower()),
            "unsupported content",
        )
        raise EdgefillError(
            f"{path}: refused to load: the file holds more than tensors and plain values "
            f"({reason[:200]}); edgefill never runs code from a model file"
        ) from None
    except Exception as exc:  # a torn or foreign file fails in many ways inside the unpickler
        raise EdgefillError(f"{path}: not a readable checkpoint ({_one_line(exc)})") from None


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by ``edgefill train``, its structure checked (a safely loadable file
    of another shape, e.g. ``{'x': 1}`` or a list, is a clear error, not a KeyError later)."""
    ck = load_checkpoint(path)
    check_training_checkpoint(ck, Path(path))
    return ck


def check_training_checkpoint(ck: Any, path: Path) -> None:
    def bad(what: str) -> EdgefillError:
        return EdgefillError(f"{path}: not an edgefill training checkpoint ({what})")

    if not isinstance(ck, dict):
        raise bad(f"it holds a {type(ck).__name__}, not a mapping")
    expected = {"stage": str, "step": int, "config": dict, "pairs": dict}
    for key, tp in expected.items():
        if key not in ck:
            raise bad(f"no {key!r} entry")
        if not isinstance(ck[key], tp) or isinstance(ck[key], bool):
            raise bad(f"{key!r} is a {type(ck[key]).__name__}, expected {tp.__name__}")
    for name, pair in ck["pairs"].items():
        if not isinstance(pair, dict) or not isinstance(pair.get("g"), dict):
            raise bad(f"pairs[{name!r}] has no generator weights")
        for k, v in pair["g"].items():
            if not isinstance(v, torch.Tensor):
                raise bad(f"pairs[{name!r}]['g'][{k!r}] is not a tensor")
    frozen = ck.get("frozen_edge")
    if frozen is not None and not isinstance(frozen, dict):
        raise bad("'frozen_edge' is not a mapping of tensors")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def _fp16_safe(sd: dict[str, torch.Tensor], half: bool) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        v = v.detach().cpu().contiguous()
        out[k] = (
            v.half()
            if half and v.is_floating_point()
            else v.float()
            if v.is_floating_point()
            else v
        )
    return out


def save_release(
    out_dir: str | Path,
    edge_state: dict[str, torch.Tensor],
    inpaint_state: dict[str, torch.Tensor],
    model_cfg: ModelConfig,
    info: dict[str, Any] | None = None,
    half: bool = True,
) -> Path:
    """Write release weights (fp16 by default) and the architecture JSON."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"format": str(RELEASE_FORMAT)}
    for name, state in ((EDGE_FILE, edge_state), (INPAINT_FILE, inpaint_state)):
        tmp = out / f".{name}.tmp"  # atomic like checkpoints: never a torn weights file
        save_file(_fp16_safe(state, half), str(tmp), metadata=meta)
        os.replace(tmp, out / name)
    doc = {
        "format": RELEASE_FORMAT,
        "model": dict(model_cfg.__dict__),
        "dtype": "float16" if half else "float32",
    }
    doc.update(info or {})
    tmp = out / (CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out / CONFIG_FILE)
    return out


def read_release_config(path: str | Path) -> tuple[ModelConfig, dict[str, Any]]:
    p = Path(path) / CONFIG_FILE
    if not p.is_file():
        raise EdgefillError(
            f"{path}: no {CONFIG_FILE}; expected a folder made by `edgefill export`"
        )
    try:
        doc = json.loads(p.read_bytes().decode("utf-8"))
        if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict):
            raise TypeError("expected an object with a 'model' object")
        model = ModelConfig(**doc["model"])
    except (ValueError, KeyError, TypeError, RecursionError) as exc:  # JSON/UTF-8 errors too
        raise EdgefillError(
            f"{p}: not a valid edgefill release config ({_one_line(exc)})"
        ) from None
    check_model_config(model, f"{p}: model")
    if doc.get("format") != RELEASE_FORMAT:
        raise EdgefillError(
            f"{p}: release format {doc.get('format')} is not supported (expected {RELEASE_FORMAT})"
        )
    return model, doc


def _load_into(module: nn.Module, path: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise EdgefillError(f"missing weights file {path}")
    try:
        sd = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise EdgefillError(f"{path}: not a readable safetensors file ({exc})") from None
    try:
        module.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    except RuntimeError as exc:
        raise EdgefillError(
            f"{path}: weights do not match the architecture in {CONFIG_FILE} ({_one_line(exc)})"
        ) from None


def load_release(
    path: str | Path,
) -> tuple[EdgeGenerator, InpaintGenerator, ModelConfig, dict[str, Any]]:
    """Build both generators from a release folder (eval mode, float32)."""
    path = Path(path)
    if not path.is_dir():
        raise EdgefillError(f"weights folder not found: {path}")
    cfg, doc = read_release_config(path)
    g1 = EdgeGenerator(cfg.width, cfg.edge_blocks)
    g2 = InpaintGenerator(cfg.width, cfg.inpaint_blocks, cfg.hole_fill)
    _load_into(g1, path / EDGE_FILE)
    _load_into(g2, path / INPAINT_FILE)
    return g1.eval(), g2.eval(), cfg, doc
