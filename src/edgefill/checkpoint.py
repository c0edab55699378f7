"""Training checkpoints (self-describing, atomic) and release weights (safetensors + JSON).

A checkpoint holds only tensors and plain Python values, so it loads with
``torch.load(weights_only=True)``: a pickle that tries to run code is refused.
A release is ``edge.safetensors`` + ``inpaint.safetensors`` + ``config.json`` and loads with
the networks module alone (no training code); it may add ``inpaint_drawn.safetensors``, a second
G2 of the same architecture that fills holes whose edges were drawn (``attach_drawn``).
A folder holding the reference EdgeConnect's released generators (``EdgeModel_gen.pth``,
``InpaintingModel_gen.pth`` from knazeri/edge-connect) loads the same way, and
``convert_reference`` turns it into a release.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgefill.config import ModelConfig, check_model_config, drop_retired, same_architecture
from edgefill.errors import EdgefillError
from edgefill.image import remove_stale_temps, temp_path
from edgefill.networks import EdgeGenerator, InpaintGenerator, load_reference

RELEASE_FORMAT = 1
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "default"  # the shipped model
EDGE_FILE, INPAINT_FILE, CONFIG_FILE = "edge.safetensors", "inpaint.safetensors", "config.json"
DRAWN_FILE = "inpaint_drawn.safetensors"  # optional: the G2 for drawn edges (``attach_drawn``)
# The reference's released generators (knazeri/edge-connect, checkpoints/<dataset>/).
REFERENCE_EDGE_FILE, REFERENCE_INPAINT_FILE = "EdgeModel_gen.pth", "InpaintingModel_gen.pth"
REFERENCE_SOURCE = "knazeri/edge-connect"
# Its released discriminators, by edgefill's pair name (D1 input: gray, edges; D2: RGB).
REFERENCE_DIS_FILES = {"edge": "EdgeModel_dis.pth", "inpaint": "InpaintingModel_dis.pth"}


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
    drawn_state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write release weights (fp16 by default) and the architecture JSON; ``drawn_state``: the
    G2 for drawn edges, if any (a stale one in ``out_dir`` is removed otherwise)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"format": str(RELEASE_FORMAT)}
    files = [(EDGE_FILE, edge_state), (INPAINT_FILE, inpaint_state)]
    if drawn_state is not None:
        files.append((DRAWN_FILE, drawn_state))
    else:
        (out / DRAWN_FILE).unlink(missing_ok=True)
    for name, state in files:
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
    """The architecture and info of a weights folder (a reference folder: read from its files)."""
    if is_reference_folder(path):
        return load_reference_generators(path)[2:]
    p = Path(path) / CONFIG_FILE
    if not p.is_file():
        raise EdgefillError(
            f"{path}: no {CONFIG_FILE}; expected a folder made by `edgefill export` (or the "
            f"reference's {REFERENCE_EDGE_FILE} and {REFERENCE_INPAINT_FILE})"
        )
    try:
        doc = json.loads(p.read_bytes().decode("utf-8"))
        if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict):
            raise TypeError("expected an object with a 'model' object")
        # strict, unlike run configs: a release says its types exactly (no "4" for 4)
        model = ModelConfig(**drop_retired(doc["model"], "model."))
    except (ValueError, KeyError, TypeError, RecursionError, EdgefillError) as exc:  # JSON too
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


def is_reference_folder(path: str | Path) -> bool:
    """A folder with the reference's released generators and no edgefill release config."""
    p = Path(path)
    return (
        p.is_dir()
        and not (p / CONFIG_FILE).is_file()
        and all((p / f).is_file() for f in (REFERENCE_EDGE_FILE, REFERENCE_INPAINT_FILE))
    )


def is_weights_folder(path: str | Path) -> bool:
    """A folder ``load_release`` can load: an edgefill release or the reference's generators."""
    return (Path(path) / CONFIG_FILE).is_file() or is_reference_folder(path)


def _reference_architecture(sd: dict[str, Any], path: Path, in_channels: int) -> tuple[int, int]:
    """(width, residual blocks) of a reference generator state dict; a clear error otherwise."""
    first = sd.get("encoder.1.weight_orig", sd.get("encoder.1.weight"))
    if not isinstance(first, torch.Tensor) or first.ndim != 4 or first.shape[1] != in_channels:
        raise EdgefillError(
            f"{path}: not a reference EdgeConnect generator with {in_channels} input channels"
        )
    blocks = {k.split(".")[1] for k in sd if k.startswith("middle.")}
    return int(first.shape[0]), len(blocks)


def _load_reference_generator(path: Path, make: Any, in_channels: int) -> nn.Module:
    checkpoint = load_checkpoint(path)  # weights_only=True: a pickle that runs code is refused
    sd = checkpoint.get("generator") if isinstance(checkpoint, dict) else None
    if not isinstance(sd, dict):
        raise EdgefillError(f"{path}: no 'generator' state dict (not a reference *_gen.pth file)")
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    width, blocks = _reference_architecture(sd, path, in_channels)
    net = make(width, blocks)
    try:
        load_reference(net, checkpoint)
    except (KeyError, RuntimeError) as exc:
        raise EdgefillError(
            f"{path}: weights do not match the reference architecture ({str(exc)[:300]})"
        ) from None
    return net


def load_reference_discriminator(path: str | Path, module: nn.Module) -> nn.Module:
    """A reference ``*_dis.pth`` file loaded into ``module`` (an edgefill Discriminator)."""
    path = Path(path)
    checkpoint = load_checkpoint(path)
    try:
        return load_reference(module, checkpoint)
    except (KeyError, RuntimeError) as exc:
        raise EdgefillError(
            f"{path}: not a reference discriminator of this architecture ({str(exc)[:300]})"
        ) from None


def load_reference_generators(
    path: str | Path,
) -> tuple[EdgeGenerator, InpaintGenerator, ModelConfig, dict[str, Any]]:
    """Both generators from a folder of the reference's released ``*_gen.pth`` files.

    The architecture (width, residual blocks) is read from the weights; everything else is the
    reference's (white hole, Canny sigma 2, soft edges), which are ModelConfig's defaults.
    """
    path = Path(path)
    g1 = _load_reference_generator(path / REFERENCE_EDGE_FILE, EdgeGenerator, 3)
    g2 = _load_reference_generator(
        path / REFERENCE_INPAINT_FILE, lambda w, b: InpaintGenerator(w, b, "white"), 4
    )
    cfg = ModelConfig(
        width=g1.encoder[1].out_channels,
        edge_blocks=len(g1.middle),
        inpaint_blocks=len(g2.middle),
    )
    if g2.encoder[1].out_channels != cfg.width:
        raise EdgefillError(f"{path}: the two generators have different widths")
    doc = {"format": RELEASE_FORMAT, "model": dict(cfg.__dict__), "source": REFERENCE_SOURCE}
    return g1.eval(), g2.eval(), cfg, doc


def convert_reference(src: str | Path, out_dir: str | Path, half: bool = False) -> Path:
    """A release folder (safetensors + config.json) from the reference's released generators.

    float32 by default, so the release computes exactly what the ``.pth`` files do."""
    g1, g2, cfg, _ = load_reference_generators(src)
    info = {
        "source": REFERENCE_SOURCE,
        "converted_from": [REFERENCE_EDGE_FILE, REFERENCE_INPAINT_FILE],
    }
    return save_release(out_dir, g1.state_dict(), g2.state_dict(), cfg, info, half)


def resolve_weights(path_or_name: str | Path | None) -> Path:
    """The weights folder for a path, or for None / 'default' (the shipped model)."""
    if path_or_name is None or str(path_or_name) == "default":
        path = DEFAULT_WEIGHTS
        if not (path / CONFIG_FILE).is_file():
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


def average_releases(
    folders: Sequence[str | Path],
    out_dir: str | Path,
    ratios: Sequence[float] | None = None,
    half: bool = True,
) -> Path:
    """A release whose weights are the weighted mean of ``folders``' (a "model soup").

    Releases fine-tuned from the same start can be averaged in weight space: the mean of the
    shipped G2 and a longer-trained one keeps some of each (docs/model-card.md, session 29).
    ``ratios`` default to equal shares and are normalised to sum 1. All folders must share the
    architecture; the means are taken in float32. The result infers with the first release's
    RELEASE_SETTINGS (copy guide, copy detail), which the others may set apart.
    """
    if len(folders) < 2:
        raise EdgefillError(f"average needs at least two releases, got {len(folders)}")
    shares = [1.0] * len(folders) if ratios is None else [float(r) for r in ratios]
    if len(shares) != len(folders):
        raise EdgefillError(f"{len(shares)} ratios for {len(folders)} releases")
    if any(not math.isfinite(r) or r < 0 for r in shares) or sum(shares) <= 0:
        raise EdgefillError(f"ratios must be finite, >= 0 and not all 0, got {shares}")
    total = sum(shares)
    shares = [r / total for r in shares]
    loaded = [load_release(f) for f in folders]
    cfg = loaded[0][2]
    for folder, (_, _, other, _) in zip(folders[1:], loaded[1:], strict=True):
        if not same_architecture(other, cfg):
            raise EdgefillError(
                f"{folder}: architecture differs from {folders[0]}'s ({other} vs {cfg})"
            )
    drawn = [load_drawn_generator(f, cfg) for f in folders]
    if any(d is None for d in drawn) and any(d is not None for d in drawn):
        raise EdgefillError(
            "some of these releases have a G2 for drawn edges and some do not; average the "
            "releases without one, then add it with `edgefill attach-drawn`"
        )

    def mean(nets: list[nn.Module]) -> dict[str, torch.Tensor]:
        states = [net.state_dict() for net in nets]
        return {
            k: sum(r * sd[k] for r, sd in zip(shares, states, strict=True))
            if v.is_floating_point()
            else v
            for k, v in states[0].items()
        }

    info = {
        "averaged_from": [str(f) for f in folders],
        "ratios": shares,
        "stage": loaded[0][3].get("stage"),
    }
    g1, g2 = ([parts[i] for parts in loaded] for i in (0, 1))
    drawn_state = None if drawn[0] is None else mean(drawn)
    return save_release(out_dir, mean(g1), mean(g2), cfg, info, half, drawn_state)


def named_generators(
    g1: nn.Module, g2: nn.Module, g2_drawn: nn.Module | None = None
) -> dict[str, nn.Module]:
    """The networks an engine runs, by the names it is called with: ``inpaint_drawn`` (the
    release's G2 for drawn edges) only when the release has one."""
    nets = {"edge": g1, "inpaint": g2}
    if g2_drawn is not None:
        nets["inpaint_drawn"] = g2_drawn
    return nets


def load_drawn_generator(path: str | Path, cfg: ModelConfig) -> InpaintGenerator | None:
    """The release's G2 for drawn edges (``DRAWN_FILE``, eval mode, float32), None without one.
    It puts back ``cfg.drawn_copy_detail`` of the copy's texture where that is set."""
    file = Path(path) / DRAWN_FILE
    if not file.is_file():
        return None
    if cfg.drawn_copy_detail is not None:
        cfg = dataclasses.replace(cfg, copy_detail=cfg.drawn_copy_detail)
    g2 = InpaintGenerator.from_config(cfg)
    _load_into(g2, file)
    return g2.eval()


def attach_drawn(release: str | Path, source: str | Path) -> Path:
    """Give ``release`` the G2 of release ``source`` (same architecture) as its G2 for drawn
    edges: the pipeline runs it instead of the release's own G2 when the edges inside the hole
    were drawn, not predicted. A G2 trained on true edges only (stage ``inpaint``) follows
    drawn edges more closely than one trained on G1's guesses (docs/model-card.md, session 32);
    the reference EdgeConnect likewise fills given edges with its stage-2 model.

    ``model.edge_guide`` may differ (a run trains with one guide weight, a release may set
    another at inference): it weighs the copy both G2s get, and the release's value stays.

    A ``source`` that has a G2 for drawn edges of its own gives that one: the network that fills
    drawn edges there (e.g. the shipped one, put back into a release fine-tuned from it)."""
    release = Path(release)
    if is_reference_folder(release):
        raise EdgefillError(
            f"{release}: convert the reference's generators first (`edgefill convert-reference`)"
        )
    g1, g2, cfg, doc = load_release(release)
    _, drawn, other, _ = load_release(source)
    if not same_architecture(other, cfg):
        raise EdgefillError(
            f"{source}: architecture differs from {release}'s ({other} vs {cfg}); the G2 for "
            "drawn edges must take the same inputs"
        )
    own = load_drawn_generator(source, other)
    info = {k: v for k, v in doc.items() if k not in ("format", "model", "dtype")}
    info["drawn_from"] = str(source) if own is None else f"{source} (its G2 for drawn edges)"
    drawn = drawn if own is None else own
    half = doc.get("dtype") == "float16"
    return save_release(
        release, g1.state_dict(), g2.state_dict(), cfg, info, half, drawn.state_dict()
    )


def load_release(
    path: str | Path,
) -> tuple[EdgeGenerator, InpaintGenerator, ModelConfig, dict[str, Any]]:
    """Build both generators from a release folder (eval mode, float32).

    A folder of the reference's released generators loads too (``load_reference_generators``).
    """
    path = Path(path)
    if not path.is_dir():
        raise EdgefillError(f"weights folder not found: {path}")
    if is_reference_folder(path):
        return load_reference_generators(path)
    cfg, doc = read_release_config(path)
    g1 = EdgeGenerator(cfg.width, cfg.edge_blocks)
    g2 = InpaintGenerator.from_config(cfg)
    _load_into(g1, path / EDGE_FILE)
    _load_into(g2, path / INPAINT_FILE)
    return g1.eval(), g2.eval(), cfg, doc
