"""Configuration: frozen dataclasses whose defaults are the reference EdgeConnect hyper-parameters.

Override from a YAML file (nested mapping) and from ``key=value`` strings with dotted keys
(``train.lr=2e-4``). Unknown keys are an error, never silently ignored.

This module also holds the fixed choices and defaults that several entry points offer (HD
strategies, precisions, pixel limits, ...): one definition each, imported by the pipeline, the
server and the CLI. It imports nothing heavy, so ``edgefill --help`` stays instant.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgefill.errors import EdgefillError

STAGES = ("edge", "inpaint", "inpaint-on-predicted", "joint")
GAN_LOSSES = ("nsgan", "lsgan", "hinge")
# How G2 sees the hole. "white": painted white, 4 input channels, G2 outputs the image (the
# reference). "telea": pre-filled with OpenCV's Telea inpainting, the mask as a 5th channel, and G2
# outputs a correction of that fill, so a small G2 starts from the classical result instead of
# having to carry colour across a large hole with its limited receptive field. "patchmatch": the
# same with a PatchMatch fill, which copies real texture from the known region (edgefill.prefill).
HOLE_FILLS = ("white", "telea", "patchmatch")

# Inference (edgefill.pipeline; docs/performance.md).
HD_STRATEGIES = ("crop", "resize", "original")
# When G2 also runs on the mirrored inputs and its two fills are averaged (``flip_average``).
FLIP_AVERAGES = ("drawn", "always", "none")
BACKENDS = ("torch", "onnx")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEFAULT_HD_MARGIN = 128  # context pixels around each hole region (crop strategy)
DEFAULT_WORKING_SIZE = 512  # longest side the networks see in the crop and resize strategies

# Input limits. Files and arrays: a decompression-bomb guard (about 100 MP). The web server is
# stricter: a 40 MP photo already takes minutes on a CPU.
DEFAULT_MAX_PIXELS = 100_000_000
SERVER_MAX_PIXELS = 40_000_000
SERVER_MAX_UPLOAD_BYTES = 64 * 1024 * 1024  # a whole request (photo + mask + edges)

# Generated masks (edgefill.masks), damage detection (edgefill.detect), classical baselines.
MASK_KINDS = ("irregular", "box", "scratch", "lama-thin", "lama-medium", "lama-thick")
DAMAGE_KINDS = ("scratches", "spots", "auto")
DETECT_METHODS = ("auto", "classical", "net")
DEFAULT_SENSITIVITY = 0.5
BASELINES = ("telea", "ns", "biharmonic", "fsr", "patchmatch")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of both generators (and what inference needs to reproduce their inputs)."""

    width: int = 64  # channels after the first conv; the reference uses 64
    edge_blocks: int = 8  # residual blocks in the edge generator
    inpaint_blocks: int = 8  # residual blocks in the image generator
    canny_sigma: float = 2.0
    # None keeps the edge generator's soft probabilities; a float binarises them.
    edge_threshold: float | None = None
    hole_fill: str = "white"
    # Weight of the edge guide in the PatchMatch pre-fill (0 = unguided): with it, edges drawn
    # into the hole (true edges in training) steer which texture is copied where. Predicted
    # edges steer G2 only: guided by a small G1's predictions PatchMatch did worse than unguided.
    edge_guide: float = 0.0
    # What G1 sees in the hole of its gray input: "white" (the reference) or a pre-fill of
    # HOLE_FILLS (unguided), which removes the step at the hole's border that G1 may trace.
    edge_hole_fill: str = "white"
    # A patch-attention block after G2's residual blocks (``networks.PatchAttention``): hole
    # features become weighted copies of known ones, so texture can come from the photo itself.
    # Needs a pre-filled G2 (its input carries the mask).
    attention: bool = False
    # G2 also gets a copy of the hole from the photo (``prefill.exemplar_fill``: PatchMatch,
    # guided like the ``patchmatch`` pre-fill; smooth with grain on thin parts) and returns, per
    # pixel, a blend of its own corrected fill and that copy: texture from the photo where the
    # copy fits, G2's painting where it does not.
    exemplar: bool = False
    # With ``exemplar``: deep inside a hole (8-24 px and more from known pixels) the blend's low
    # frequencies lean to G2's own fill, whose mean is safer than colours copied from far away;
    # the copy's texture stays (``networks.DEEP_OWN_SHARE``).
    deep_blend: bool = False
    # With ``exemplar``: the share of the copy's fine texture (its detail finer than a Gaussian
    # of ``copy_detail_sigma`` px) that the blend takes back. The blend gives the copy
    # only the share 1 - w, so its grain shows at that contrast; ``copy_detail`` c adds
    # c * w * (that detail), so c = 1 keeps the copy's texture at full contrast while colour and
    # shape stay the blend's. Not learned and needs no training: a release may set it.
    copy_detail: float = 0.0
    # The band ``copy_detail`` puts back: the copy's detail finer than a Gaussian of this many px
    # (at 256 px, 2 is grain and the finest texture; 4 also takes coarser texture, while edges
    # and shading stay the blend's). Also a release setting.
    copy_detail_sigma: float = 2.0
    # ``copy_detail`` for the release's G2 for drawn edges only (None = ``copy_detail``): that
    # G2 keeps more of its own fill, so less of the copy's texture suits it (model card,
    # session 46). Read when that G2 is loaded; a release setting, not trained.
    drawn_copy_detail: float | None = None


@dataclass(frozen=True)
class DataConfig:
    crop_size: int = 256
    # Random crops take a square of side U(min_scale, 1) * short side before resizing.
    min_crop_scale: float = 0.5
    max_crop_scale: float = 1.0
    # Generate masks at crop_size * mask_scale and take a random crop_size window of them, so
    # training on small crops still sees strokes as wide as at the evaluation resolution.
    mask_scale: float = 1.0
    hflip: bool = True
    # Comma-separated mask generators and their sampling weights for training.
    mask_kinds: str = "irregular,box,lama-medium,lama-thick"
    mask_weights: str = "0.5,0.15,0.2,0.15"
    mask_dir: str | None = None  # use masks from this folder instead of generators
    val_fraction: float = 0.1  # photos whose name hash falls below this go to validation
    val_count: int = 32  # validation photos scored every val_every steps
    val_size: int = 0  # side of the validation crops; 0 = crop_size
    num_workers: int = 0


@dataclass(frozen=True)
class LossConfig:
    gan_loss: str = "nsgan"
    edge_adv_weight: float = 1.0
    fm_weight: float = 10.0
    # Class-balanced BCE of G1's edges against the true ones inside the hole (0 = the reference,
    # adversarial + feature matching only; ZITS trains its structure restorer on BCE).
    edge_bce_weight: float = 0.0
    l1_weight: float = 1.0
    # Weight of G2's L1 inside the hole relative to the known region (1 = the reference; LaMa
    # uses 0: inside the hole, where many fills are right, L1 pulls toward their blurry mean).
    l1_hole_weight: float = 1.0
    inpaint_adv_weight: float = 0.1
    # D2 judges the result with the photo outside the hole and calls fake only the patches that
    # hold hole pixels; G2's adversarial term counts those patches only (LaMa's mask-as-fake
    # target). False = the reference: D2 sees G2's raw output and every patch of it is fake,
    # so on a pre-filled G2 most fake patches equal the photo and D2's loss stays near ln 2.
    inpaint_adv_hole: bool = False
    perceptual_weight: float = 0.1
    style_weight: float = 250.0
    tv_weight: float = 0.0
    # G2: L1 of the result's pixel differences against the photo's, on pairs touching the hole
    # (``losses.hole_gradient_l1``): rewards steps where the edge guide puts them.
    gradient_weight: float = 0.0
    vgg_weights: str | None = None  # safetensors file; None = the cache (edgefill fetch-vgg)


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 10
    batch_size: int = 8
    lr: float = 1e-4
    beta1: float = 0.0
    beta2: float = 0.9
    d2g_lr: float = 0.1  # discriminator lr = lr * d2g_lr
    # Learning rate of G2's patch-attention block (model.attention) = lr * attention_lr: a block
    # added to a trained G2 starts at zero and would otherwise learn at the fine-tuning pace.
    attention_lr: float = 1.0
    max_steps: int = 2_000_000
    lr_decay_steps: int = 0  # 0 = constant lr; else cosine decay to lr_min_ratio*lr
    lr_min_ratio: float = 0.1
    ema_decay: float = 0.999  # 0 disables the EMA copy of the generators
    # Share of samples whose G2 sees the true (Canny) edges instead of G1's in the stages with a
    # G1 (inpaint-on-predicted, joint); 0 = the reference.
    true_edge_prob: float = 0.0
    # FSR in the exemplar copy's thin parts (prefill.exemplar_fill), as at inference. False
    # trains where OpenCV lacks cv2.xphoto (the GPU machine's image): the result takes the copy
    # as it is on thin parts, so G2 is not trained there, only its input near them changes.
    thin_fsr: bool = True
    log_every: int = 50
    val_every: int = 1000
    save_every: int = 1000
    sample_every: int = 1000
    keep_last: int = 3
    max_nonfinite: int = 20  # consecutive non-finite losses before the run stops
    amp: str = "auto"  # auto = bf16 on CUDA and on CPUs with AMX / AVX512-BF16, else fp32
    compile: bool = False
    threads: int = 0  # torch CPU threads; 0 = leave torch's default


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        validate(self)


# Architecture limits: far beyond any sensible model, but small enough that building one cannot
# exhaust a machine's memory (a hostile config.json with ``edge_blocks: 1e9`` is refused).
MAX_WIDTH = 1024
MAX_BLOCKS = 64


# Model keys that change what a release computes without changing its weights or their inputs:
# the copy guide's weight and the share and band of the copy's texture put back after the blend.
# A run may train with one value and a release infer with another (chosen on training photos).
RELEASE_SETTINGS = ("edge_guide", "copy_detail", "drawn_copy_detail", "copy_detail_sigma")


def release_settings(m: ModelConfig) -> dict[str, Any]:
    """``m``'s RELEASE_SETTINGS by name."""
    return {k: getattr(m, k) for k in RELEASE_SETTINGS}


def same_architecture(a: ModelConfig, b: ModelConfig) -> bool:
    """Whether weights trained under ``a`` fit ``b`` and get the same inputs: every model key
    but the RELEASE_SETTINGS (``attach_drawn``, ``--resume``, ``export --base``)."""
    return dataclasses.replace(a, **release_settings(b)) == b


def check_model_config(m: ModelConfig, where: str = "model") -> None:
    """Type and range of every architecture field, before any network is built."""

    def whole(name: str, lo: int, hi: int) -> None:
        v = getattr(m, name)
        if isinstance(v, bool) or not isinstance(v, int):
            raise EdgefillError(f"{where}.{name} must be a whole number, got {v!r}")
        if not lo <= v <= hi:
            raise EdgefillError(f"{where}.{name} must be between {lo} and {hi}, got {v}")

    def number(name: str, lo: float, hi: float, optional: bool = False) -> None:
        v = getattr(m, name)
        if v is None and optional:
            return
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
            raise EdgefillError(f"{where}.{name} must be a number from {lo} to {hi}, got {v!r}")

    whole("width", 1, MAX_WIDTH)
    whole("edge_blocks", 0, MAX_BLOCKS)
    whole("inpaint_blocks", 0, MAX_BLOCKS)
    number("canny_sigma", 0.0, 50.0)
    number("edge_threshold", 0.0, 1.0, optional=True)
    number("edge_guide", 0.0, 100.0)
    if not isinstance(m.hole_fill, str) or m.hole_fill not in HOLE_FILLS:
        raise EdgefillError(f"{where}.hole_fill must be one of {HOLE_FILLS}, got {m.hole_fill!r}")
    if not isinstance(m.edge_hole_fill, str) or m.edge_hole_fill not in HOLE_FILLS:
        raise EdgefillError(
            f"{where}.edge_hole_fill must be one of {HOLE_FILLS}, got {m.edge_hole_fill!r}"
        )
    if not isinstance(m.attention, bool):
        raise EdgefillError(f"{where}.attention must be true or false, got {m.attention!r}")
    if m.attention and m.hole_fill == "white":
        raise EdgefillError(f"{where}.attention needs a pre-filled G2 (hole_fill other than white)")
    if not isinstance(m.exemplar, bool):
        raise EdgefillError(f"{where}.exemplar must be true or false, got {m.exemplar!r}")
    if m.exemplar and m.hole_fill in ("white", "patchmatch"):
        raise EdgefillError(
            f"{where}.exemplar blends G2's corrected pre-fill with a PatchMatch copy: it needs "
            f"hole_fill telea, got {m.hole_fill!r}"
        )
    if not isinstance(m.deep_blend, bool):
        raise EdgefillError(f"{where}.deep_blend must be true or false, got {m.deep_blend!r}")
    if m.deep_blend and not m.exemplar:
        raise EdgefillError(
            f"{where}.deep_blend changes the exemplar blend: it needs exemplar true"
        )
    number("copy_detail", 0.0, 4.0)
    number("drawn_copy_detail", 0.0, 4.0, optional=True)
    number("copy_detail_sigma", 0.5, 16.0)
    for name in ("copy_detail", "drawn_copy_detail"):
        if getattr(m, name) and not m.exemplar:
            raise EdgefillError(
                f"{where}.{name} puts back the copy's texture: it needs exemplar true"
            )


def validate(cfg: Config) -> None:
    check_model_config(cfg.model)
    if cfg.loss.gan_loss not in GAN_LOSSES:
        raise EdgefillError(f"loss.gan_loss must be one of {GAN_LOSSES}, got {cfg.loss.gan_loss!r}")
    if cfg.data.crop_size < 16 or cfg.data.crop_size % 4:
        raise EdgefillError(
            f"data.crop_size must be a multiple of 4 and >= 16, got {cfg.data.crop_size}"
        )
    if not 0.0 <= cfg.train.true_edge_prob <= 1.0:
        raise EdgefillError(
            f"train.true_edge_prob must be in [0, 1], got {cfg.train.true_edge_prob}"
        )
    for key in ("l1_hole_weight", "gradient_weight"):
        if not getattr(cfg.loss, key) >= 0:
            raise EdgefillError(f"loss.{key} must be >= 0, got {getattr(cfg.loss, key)}")
    for key in ("log_every", "val_every", "save_every", "sample_every"):
        # Step intervals (steps % interval): 0 would fail with a ZeroDivisionError mid-run.
        if getattr(cfg.train, key) < 1:
            raise EdgefillError(f"train.{key} must be >= 1 (steps), got {getattr(cfg.train, key)}")
    if not cfg.train.attention_lr > 0:
        raise EdgefillError(f"train.attention_lr must be > 0, got {cfg.train.attention_lr}")
    if cfg.train.amp not in ("auto", "bf16", "fp32"):
        raise EdgefillError(f"train.amp must be auto, bf16 or fp32, got {cfg.train.amp!r}")
    kinds = cfg.data.mask_kinds.split(",")
    if len(kinds) != len(cfg.data.mask_weights.split(",")):
        raise EdgefillError("data.mask_kinds and data.mask_weights must have the same length")


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the field's declared type, or fail naming the key."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    try:
        if tp is bool:
            if isinstance(value, str):
                low = value.lower()
                if low in ("true", "1", "yes", "on"):
                    return True
                if low in ("false", "0", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(float(value)) if isinstance(value, str) else int(value)
        if tp is float:
            return float(value)
        if tp is str:
            return str(value)
    except (TypeError, ValueError):
        raise EdgefillError(f"config key {key!r}: cannot use {value!r} as {tp.__name__}") from None
    return value


# Keys that earlier versions wrote into run configs, checkpoints and release config.json, with
# the value that meant "off": saved with it, they still load (the key is dropped).
RETIRED_KEYS = {"model.drawn_flag": False}  # removed in session 32: the drawn-edge G2 replaced it


def drop_retired(data: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``data`` (a config section, keys under ``prefix``) without its RETIRED_KEYS."""
    out = {}
    for name, value in data.items():
        key = prefix + name
        if key not in RETIRED_KEYS:
            out[name] = value
        elif value != RETIRED_KEYS[key]:
            raise EdgefillError(
                f"config key {key!r} was removed from edgefill; this file was made with "
                f"{key}={value!r}, which this version cannot run"
            )
    return out


def from_dict(data: dict[str, Any], cls: type = Config, prefix: str = "") -> Any:
    """Build a (nested) config dataclass from a mapping; unknown keys raise EdgefillError."""
    if not isinstance(data, dict):
        raise EdgefillError(f"config section {prefix or '<root>'!r} must be a mapping")
    data = drop_retired(data, prefix)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f" in section {prefix.rstrip('.')!r}" if prefix else ""
        raise EdgefillError(
            f"unknown config key(s){where}: {', '.join(unknown)}; known: {', '.join(sorted(names))}"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = from_dict(value, tp, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, tp, prefix + name)
    return cls(**kwargs)


def apply_overrides(base: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings to a nested dict (values parsed as YAML scalars)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for item in overrides:
        if "=" not in item:
            raise EdgefillError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        value = yaml.safe_load(raw) if raw.strip() else ""
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise EdgefillError(f"--set {key}: {part!r} is not a config section")
        node[parts[-1]] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML file (if any), then the ``key=value`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise EdgefillError(f"config file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise EdgefillError(f"config file {p} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise EdgefillError(
                f"config file {p} must be a mapping of sections (model:, train:, ...)"
            )
    data = apply_overrides(data, overrides or [])
    return from_dict(data)
