"""Staged GAN training of the edge generator (G1/D1) and the image generator (G2/D2).

Stages: ``edge`` (G1 vs D1), ``inpaint`` (G2 vs D2 on ground-truth edges),
``inpaint-on-predicted`` (G2 on edges from a frozen G1, the reference's "model 3") and
``joint`` (both, end to end: G2's losses also reach G1 through the predicted edges, as in the
reference's "model 4").

Each iteration (BasicSR order; the reference's order fails on torch >= 1.5):
  1. generator forward with every discriminator frozen; one backward over all generator losses;
  2. discriminator step on the detached fakes.
A step whose loss or gradients are not finite (on any rank) is skipped and logged; too many in a
row stop the run before anything is saved. Runs under ``torchrun`` with DistributedDataParallel
(NCCL on GPUs, gloo on CPU); only rank 0 writes.
"""

from __future__ import annotations

import copy
import csv
import math
import os
import signal
import sys
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from edgefill import losses as L
from edgefill.backends import resolve_precision
from edgefill.checkpoint import (
    CONFIG_FILE,
    DRAWN_FILE,
    REFERENCE_DIS_FILES,
    atomic_torch_save,
    is_reference_folder,
    is_weights_folder,
    load_drawn_generator,
    load_reference_discriminator,
    load_release,
    load_training_checkpoint,
    read_release_config,
    save_release,
)
from edgefill.config import (
    STAGES,
    Config,
    ModelConfig,
    from_dict,
    release_settings,
    same_architecture,
    to_dict,
)
from edgefill.data import (
    PhotoDataset,
    StepSampler,
    collate,
    list_images,
    sample_edge_input,
    split,
    validation_samples,
)
from edgefill.edges import composite
from edgefill.errors import EdgefillError
from edgefill.metrics import LPIPS, edge_scores, l1, psnr, ssim
from edgefill.networks import (
    Discriminator,
    EdgeGenerator,
    InpaintGenerator,
    adapt_inpaint_state,
    inpaint_input,
)
from edgefill.prefill import EXEMPLAR, fill_batch, fills_unavailable, fsr_unavailable
from edgefill.vgg import default_vgg_path, load_vgg16

CKPT_DIR = "checkpoints"
Terms = dict[str, torch.Tensor]


# ----------------------------------------------------------------------------- helpers


def lr_factor(step: int, decay_steps: int, min_ratio: float) -> float:
    """Constant (decay_steps=0, the reference) or cosine decay to min_ratio over decay_steps."""
    if decay_steps <= 0:
        return 1.0
    t = min(step, decay_steps) / decay_steps
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(pm.detach(), 1 - decay)
    for be, bm in zip(ema.buffers(), model.buffers(), strict=True):
        be.copy_(bm)


def _total(terms: Terms) -> torch.Tensor:
    return torch.stack([v.float() for v in terms.values()]).sum()


@dataclass
class Pair:
    """One generator/discriminator pair with its optimisers, schedulers and EMA copy.

    ``g`` and ``d`` are the plain modules (state dicts, EMA, the frozen-D call in the generator
    step); ``g_run`` and ``d_run`` are what the training step calls: the same modules wrapped in
    DistributedDataParallel and/or torch.compile when those are on.
    """

    g: nn.Module
    d: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    sched_g: torch.optim.lr_scheduler.LambdaLR
    sched_d: torch.optim.lr_scheduler.LambdaLR
    ema: nn.Module | None = None
    g_run: nn.Module | None = None
    d_run: nn.Module | None = None

    def __post_init__(self) -> None:
        self.g_run = self.g if self.g_run is None else self.g_run
        self.d_run = self.d if self.d_run is None else self.d_run

    def state(self) -> dict[str, Any]:
        s = {
            "g": self.g.state_dict(),
            "d": self.d.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
        }
        if self.ema is not None:
            s["ema"] = self.ema.state_dict()
        return s

    def load(self, s: dict[str, Any]) -> None:
        self.g.load_state_dict(s["g"])
        self.d.load_state_dict(s["d"])
        for opt, sched, key in ((self.opt_g, self.sched_g, "g"), (self.opt_d, self.sched_d, "d")):
            bases = list(sched.base_lrs)  # this config's rates (train.lr, d2g_lr, attention_lr)
            opt.load_state_dict(s[f"opt_{key}"])
            sched.load_state_dict(s[f"sched_{key}"])
            keep_base_rates(opt, sched, bases)
        if self.ema is not None:
            # A run started without EMA and resumed with it starts the EMA from the weights.
            self.ema.load_state_dict(s.get("ema", s["g"]))

    def release_state(self) -> dict[str, torch.Tensor]:
        return (self.ema if self.ema is not None else self.g).state_dict()


def keep_base_rates(
    opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LambdaLR, bases: list[float]
) -> None:
    """Give a resumed optimiser the config's base rates: the checkpoint's own (the run's
    ``train.lr`` when it started) would otherwise silently win over ``--resume --set train.lr``.
    The schedule's factor is recomputed from the config anyway (its lambda is not saved)."""
    sched.base_lrs = list(bases)
    for group, base, factor in zip(opt.param_groups, bases, sched.lr_lambdas, strict=True):
        group["initial_lr"] = base
        group["lr"] = base * factor(sched.last_epoch)


def make_pair(g: nn.Module, d: nn.Module, cfg: Config) -> Pair:
    t = cfg.train
    opt_g = torch.optim.Adam(generator_groups(g, t.lr, t.attention_lr), betas=(t.beta1, t.beta2))
    opt_d = torch.optim.Adam(d.parameters(), lr=t.lr * t.d2g_lr, betas=(t.beta1, t.beta2))

    def factor(step: int) -> float:
        return lr_factor(step, t.lr_decay_steps, t.lr_min_ratio)

    ema = copy.deepcopy(g).eval().requires_grad_(False) if t.ema_decay > 0 else None
    return Pair(
        g,
        d,
        opt_g,
        opt_d,
        torch.optim.lr_scheduler.LambdaLR(opt_g, factor),
        torch.optim.lr_scheduler.LambdaLR(opt_d, factor),
        ema,
    )


def generator_groups(g: nn.Module, lr: float, attention_lr: float) -> list[dict[str, Any]]:
    """Adam parameter groups: one, or (with ``attention_lr`` != 1 and a patch-attention block)
    the block's own at ``lr * attention_lr``; one group keeps older checkpoints resumable."""
    block = getattr(g, "attend", None)
    if block is None or attention_lr == 1.0:
        return [{"params": list(g.parameters()), "lr": lr}]
    own = {id(p) for p in block.parameters()}
    rest = [p for p in g.parameters() if id(p) not in own]
    return [
        {"params": rest, "lr": lr},
        {"params": list(block.parameters()), "lr": lr * attention_lr},
    ]


def load_generator_from(path: str | Path, which: str) -> dict[str, torch.Tensor]:
    """Generator weights ('edge', 'inpaint', or 'inpaint_drawn': a release's G2 for drawn edges)
    from a release folder, a run folder or a checkpoint.

    From a run, the EMA weights if the run kept them."""
    p = Path(path)
    if which == "inpaint_drawn":
        drawn = load_drawn_generator(p, read_release_config(p)[0]) if is_weights_folder(p) else None
        if drawn is None:
            raise EdgefillError(
                f"{p}: no G2 for drawn edges here (a release folder with {DRAWN_FILE}); "
                "--init-drawn starts from that file of a release"
            )
        return drawn.state_dict()
    if is_weights_folder(p):  # a release, or the reference's released generators
        g1, g2, _, _ = load_release(p)
        return (g1 if which == "edge" else g2).state_dict()
    ckpt_path = checkpoint_in(p)
    ck = load_training_checkpoint(ckpt_path)
    if which in ck["pairs"]:
        pair = ck["pairs"][which]
        return pair.get("ema", pair["g"])
    if which == "edge" and ck.get("frozen_edge") is not None:
        return ck["frozen_edge"]
    raise EdgefillError(f"{ckpt_path}: has no {which} generator (stage {ck.get('stage')})")


def _load_generator(g: nn.Module, sd: dict[str, torch.Tensor], source: str | Path) -> None:
    """``g.load_state_dict(sd)``, with one clear line when ``source`` has another model size
    (``--init`` / ``--edge-weights`` of another width or block count) instead of torch's
    traceback."""
    mine = g.state_dict()
    missing, extra = [k for k in mine if k not in sd], [k for k in sd if k not in mine]
    shapes = [k for k in mine if k in sd and sd[k].shape != mine[k].shape]
    if missing or extra or shapes:
        why = [f"{k} is {tuple(sd[k].shape)} there, {tuple(mine[k].shape)} here" for k in shapes]
        if missing or extra:
            why.append(f"{len(missing)} weights missing there, {len(extra)} unknown here")
        raise EdgefillError(
            f"{source}: its {type(g).__name__} is another size than this run's (model.width, "
            f"model.*_blocks): {why[0]}"
        )
    g.load_state_dict(sd)


def _init_worker(worker_id: int) -> None:
    """DataLoader workers leave SIGINT / SIGTERM to the main process, which stops cleanly, and
    run the frozen G1 on one thread each (the workers already run side by side)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    torch.set_num_threads(1)


def _shut_down_workers(it: Any) -> None:
    """Stop a loader iterator's workers now. They ignore SIGTERM (``_init_worker``), so workers
    left to interpreter exit, after an error, would keep it waiting on them for ever."""
    shutdown = getattr(it, "_shutdown_workers", None)  # absent without worker processes
    if shutdown is not None:
        shutdown()


class StopRequest:
    """While active, SIGINT / SIGTERM ask the training loop to stop after the current step (which
    then writes a checkpoint) instead of killing it mid-update; a second signal stops at once.

    A repeat within ``ECHO_S`` is taken as the same request: `timeout` and `kill -- -PGID`
    signal the process and its group, so one stop arrives twice within microseconds."""

    ECHO_S = 0.5

    def __init__(self) -> None:
        self.requested: str | None = None
        self._at = 0.0
        self._clock = time.monotonic
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        now = self._clock()
        if self.requested:
            if now - self._at < self.ECHO_S:
                return
            signal.default_int_handler(signum, frame)
        self.requested, self._at = signal.Signals(signum).name, now

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


def source_model_config(path: str | Path) -> ModelConfig:
    """The architecture of a release folder, a run folder or a checkpoint (see --init)."""
    p = Path(path)
    if is_weights_folder(p):
        return read_release_config(p)[0]
    ckpt_path = checkpoint_in(p)
    return from_dict(load_training_checkpoint(ckpt_path)["config"]).model


def checkpoint_in(path: Path) -> Path:
    """A checkpoint file as given, or a run folder's latest checkpoint."""
    ckpt_path = latest_checkpoint(path) if path.is_dir() else path
    if ckpt_path is None:
        raise EdgefillError(f"{path}: no checkpoint or release weights found")
    return ckpt_path


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    steps = sorted(Path(run_dir, CKPT_DIR).glob("step_*.pt"))
    return steps[-1] if steps else None


def latest_intact_checkpoint(run_dir: str | Path) -> tuple[Path, dict[str, Any], list[str]]:
    """The newest checkpoint that loads and has the right structure, and one line per newer
    one that did not (a file torn by a full disk or a copy, say). None intact is an error."""
    steps = sorted(Path(run_dir, CKPT_DIR).glob("step_*.pt"), reverse=True)
    bad: list[str] = []
    for path in steps:
        try:
            return path, load_training_checkpoint(path), bad
        except EdgefillError as exc:
            bad.append(str(exc))
    raise EdgefillError(
        f"--resume: no intact checkpoint in {Path(run_dir, CKPT_DIR)}"
        + (f" ({len(bad)} unreadable, newest: {bad[0]})" if bad else "")
    )


# ----------------------------------------------------------------------------- trainer


@dataclass
class Trainer:
    cfg: Config
    stage: str
    data: str
    out: Path
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    edge_weights: str | None = None  # frozen G1 for inpaint-on-predicted
    init: str | None = None  # start generators from a release / run
    init_drawn: bool = False  # G2 from the --init release's G2 for drawn edges
    rank: int = 0
    world: int = 1
    show_progress: bool = True

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise EdgefillError(f"unknown stage {self.stage!r}; choose from {', '.join(STAGES)}")
        self.out = Path(self.out)
        self._setup_runtime()
        train_files = self._split_photos()
        self._build_networks()  # after the seed: their random init is part of the run
        self._setup_data(train_files)
        self._setup_losses()
        self.step = 0
        self.best: float | None = None
        self.nonfinite = 0
        self.tb: Any = None  # TensorBoard SummaryWriter, when installed (rank 0, during fit)

    # -- setup ---------------------------------------------------------------

    def _setup_runtime(self) -> None:
        """Seed, CPU threads, TF32 and mixed precision (bf16 autocast) for this device."""
        t = self.cfg.train
        torch.manual_seed(t.seed)
        if t.threads > 0:
            torch.set_num_threads(t.threads)
        if self.device.type == "cuda":  # TF32 matmuls/convs unless full fp32 was asked for
            tf32 = t.amp != "fp32"
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
            torch.backends.cudnn.benchmark = True
        if t.amp == "auto":  # inference's rule: bf16 where it is native (training has no fp16 path)
            self.amp = resolve_precision("auto", self.device) == "bf16"
        else:
            self.amp = t.amp == "bf16"

    def _split_photos(self) -> list[Path]:
        """The training photos; the validation ones (at most data.val_count) go to val_files."""
        cfg = self.cfg
        train_files, val_files = split(list_images(self.data), cfg.data.val_fraction)
        if not train_files:
            raise EdgefillError(
                f"{self.data}: every photo fell into validation; lower data.val_fraction"
            )
        self.train_files, self.val_files = train_files, val_files[: cfg.data.val_count]
        return train_files

    def _build_networks(self) -> None:
        """The stage's generator/discriminator pairs, the frozen G1 (CPU) and the --init weights."""
        m = self.cfg.model
        self.pairs: dict[str, Pair] = {}
        if self.stage in ("edge", "joint"):
            # D1 sees (gray, edges), the reference's channel order: its D1 weights fine-tune.
            self.pairs["edge"] = self._pair(EdgeGenerator(m.width, m.edge_blocks), Discriminator(2))
        if self.stage != "edge":
            self.pairs["inpaint"] = self._pair(
                InpaintGenerator.from_config(m),
                Discriminator(3),
            )
        self.frozen_edge: EdgeGenerator | None = None
        if self.stage == "inpaint-on-predicted":
            self.frozen_edge = self._frozen_edge_generator()
        if self.init_drawn and not (self.init and "inpaint" in self.pairs):
            raise EdgefillError(
                "--init-drawn starts G2 from a release's G2 for drawn edges: it needs --init "
                "(that release) and a stage that trains G2"
            )
        if self.init:
            self._init_from(self.init)

    def _frozen_edge_generator(self) -> EdgeGenerator:
        if not self.edge_weights:
            raise EdgefillError(
                "stage inpaint-on-predicted needs --edge-weights (a release, run or checkpoint)"
            )
        m = self.cfg.model
        g1 = EdgeGenerator(m.width, m.edge_blocks)
        _load_generator(g1, load_generator_from(self.edge_weights, "edge"), self.edge_weights)
        return g1.eval().requires_grad_(False)

    def _init_from(self, source: str) -> None:
        """Start each generator (and its EMA) from a release, run or checkpoint (fine-tuning).

        From a folder of the reference's released files, its discriminators start from its
        ``*_dis.pth`` too, where present."""
        for name, pair in self.pairs.items():
            drawn = name == "inpaint" and self.init_drawn
            sd = load_generator_from(source, "inpaint_drawn" if drawn else name)
            if name == "inpaint":
                source_fill = source_model_config(source).hole_fill
                sd = adapt_inpaint_state(sd, pair.g, source_fill != self.cfg.model.hole_fill)
            _load_generator(pair.g, sd, source)
            if pair.ema is not None:
                pair.ema.load_state_dict(sd)
            dis = Path(source) / REFERENCE_DIS_FILES[name]
            if is_reference_folder(source) and dis.is_file():
                load_reference_discriminator(dis, pair.d)

    def _setup_data(self, train_files: list[Path]) -> None:
        """The training dataset. The frozen G1 runs in the data workers (on the CPU), beside the
        pre-fill that follows its edges; the live G1 of stage joint runs in the training step."""
        cfg, m = self.cfg, self.cfg.model
        # Stage edge trains G1 alone: G2's pre-fills (the costly part of a sample) go unmade.
        hole_fill, exemplar = (
            ("white", False) if self.stage == "edge" else (m.hole_fill, m.exemplar)
        )
        thin_fsr = cfg.train.thin_fsr
        reason = fills_unavailable(hole_fill, m.edge_hole_fill, exemplar, thin_fsr)
        if reason is not None:
            if reason == fsr_unavailable():  # FSR is only the copy's thin parts: say how to skip it
                reason += "; or train without it: --set train.thin_fsr=false (docs/training.md)"
            raise EdgefillError(f"the model's pre-fill cannot run here: {reason}")
        self.dataset = PhotoDataset(
            train_files,
            cfg.data,
            m.canny_sigma,
            hole_fill=hole_fill,
            edge_guide=m.edge_guide,
            edge_generator=copy.deepcopy(self.frozen_edge),
            true_edge_prob=cfg.train.true_edge_prob,
            edge_hole_fill=m.edge_hole_fill,
            exemplar=exemplar,
            thin_fsr=thin_fsr,
        )
        if self.frozen_edge is not None:  # validation runs the trainer's own copy
            self.frozen_edge = self.frozen_edge.to(self.device)

    def _setup_losses(self) -> None:
        """VGG perceptual/style losses (when weighted) and LPIPS for validation (rank 0)."""
        lc = self.cfg.loss
        self.vgg_losses: L.VGGLosses | None = None
        if "inpaint" in self.pairs and (lc.perceptual_weight > 0 or lc.style_weight > 0):
            self.vgg_losses = L.VGGLosses(load_vgg16(lc.vgg_weights)).to(self.device)
        self.lpips: LPIPS | None = None  # validation only, so rank 0 only
        vgg_path = Path(lc.vgg_weights) if lc.vgg_weights else default_vgg_path()
        if vgg_path.is_file() and self.rank == 0:
            self.lpips = LPIPS(path=vgg_path).to(self.device)

    def _pair(self, g: nn.Module, d: nn.Module) -> Pair:
        g, d = g.to(self.device), d.to(self.device)
        pair = make_pair(g, d, self.cfg)
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            pair.g_run = DistributedDataParallel(g, device_ids=ids)
            pair.d_run = DistributedDataParallel(d, device_ids=ids)
        if self.cfg.train.compile:
            pair.g_run = torch.compile(pair.g_run)  # type: ignore[assignment]
        return pair

    # -- state ---------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "format": 1,
            "stage": self.stage,
            "step": self.step,
            "config": to_dict(self.cfg),
            "init": None if self.init is None else str(Path(self.init).resolve()),
            "init_drawn": self.init_drawn,
            "pairs": {k: p.state() for k, p in self.pairs.items()},
            "frozen_edge": self.frozen_edge.state_dict() if self.frozen_edge is not None else None,
            "best": self.best,
            "nonfinite": self.nonfinite,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state(self, s: dict[str, Any]) -> None:
        if s["stage"] != self.stage:
            raise EdgefillError(
                f"cannot resume: the run was stage {s['stage']!r}, not {self.stage!r}"
            )
        saved = from_dict(s["config"])
        if not same_architecture(saved.model, self.cfg.model):
            raise EdgefillError(
                "cannot resume: the model architecture in the config differs from the run's "
                f"({saved.model} vs {self.cfg.model}); resume with the run's config.yaml"
            )
        for k, p in self.pairs.items():
            p.load(s["pairs"][k])
        if self.frozen_edge is not None and s.get("frozen_edge") is not None:
            self.frozen_edge.load_state_dict(s["frozen_edge"])
        self.step, self.best, self.nonfinite = s["step"], s["best"], s["nonfinite"]
        # Where the run started, kept for its exports.
        self.init, self.init_drawn = (
            self.init or s.get("init"),
            self.init_drawn or s.get("init_drawn", False),
        )
        torch.set_rng_state(s["torch_rng"])
        if s.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(s["cuda_rng"])

    def save(self, best: bool = False) -> None:
        """Checkpoint to checkpoints/step_N.pt (keeping the last train.keep_last; 0 keeps all)."""
        if self.rank != 0:
            return
        ck = self.out / CKPT_DIR
        state = self.state()
        atomic_torch_save(state, ck / f"step_{self.step:08d}.pt")
        if self.cfg.train.keep_last > 0:
            for old in sorted(ck.glob("step_*.pt"))[: -self.cfg.train.keep_last]:
                old.unlink(missing_ok=True)
        if best:
            atomic_torch_save(state, ck / "best.pt")

    # -- one iteration --------------------------------------------------------

    def _autocast(self) -> AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.amp else nullcontext()

    def generator_losses(self, batch: dict[str, torch.Tensor]) -> tuple[Terms, dict[str, tuple]]:
        """Generator forward pass: weighted loss terms, and the (real, fake, hole mask or None)
        each D will see (the mask: only patches with hole pixels count as fake).

        The discriminators are frozen and called outside DDP (nothing of theirs to sync): the
        generators' losses flow through them without giving them gradients.
        """
        terms: Terms = {}
        d_inputs: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = {}
        for p in self.pairs.values():
            p.d.requires_grad_(False)
        with self._autocast():
            # G2's edges: from the data workers (true ones, or the frozen G1's there), or in
            # stage joint from the live G1, whose gradient then also comes from G2's losses.
            edges = batch["edges_g2"]
            if "edge" in self.pairs:
                pred = self._edge_terms(batch, terms, d_inputs)
                pred = self._mix_true_edges(pred, batch["edges_full"])
                edges = composite(batch["edges_known"], pred, batch["mask"])
            if "inpaint" in self.pairs:
                self._inpaint_terms(batch, edges, terms, d_inputs)
        return terms, d_inputs

    def _edge_terms(
        self, batch: dict[str, torch.Tensor], terms: Terms, d_inputs: dict
    ) -> torch.Tensor:
        """G1's adversarial and feature-matching (and optional BCE) terms; returns its edges."""
        lc, pair = self.cfg.loss, self.pairs["edge"]
        pred = pair.g_run(sample_edge_input(batch)).float()
        # (gray, edges): the reference's D1 input order, so its released D1 can be fine-tuned.
        real = torch.cat([batch["gray"], batch["edges_full"]], 1)
        fake = torch.cat([batch["gray"], pred], 1)
        fake_logits, fake_feats = pair.d(fake)
        with torch.no_grad():
            _, real_feats = pair.d(real)
        terms["edge/g_adv"] = lc.edge_adv_weight * L.adversarial_g(lc.gan_loss, fake_logits.float())
        terms["edge/fm"] = lc.fm_weight * L.feature_matching(
            [f.float() for f in fake_feats], [f.float() for f in real_feats]
        )
        if lc.edge_bce_weight > 0:
            terms["edge/bce"] = lc.edge_bce_weight * L.balanced_edge_bce(
                pred, batch["edges_full"], batch["mask"]
            )
        d_inputs["edge"] = (real, fake, None)
        return pred

    def _inpaint_terms(
        self, batch: dict[str, torch.Tensor], edges: torch.Tensor, terms: Terms, d_inputs: dict
    ) -> None:
        """G2's adversarial, L1, perceptual, style, TV and gradient terms, guided by ``edges``."""
        lc, pair = self.cfg.loss, self.pairs["inpaint"]
        image, mask = batch["image"], batch["mask"]
        m = self.cfg.model
        x = inpaint_input(batch["filled"], mask, edges, m.hole_fill, batch.get("exemplar"))
        out = pair.g_run(x).float()
        merged = out * mask + image * (1 - mask)
        hole = mask if lc.inpaint_adv_hole else None
        fake = out if hole is None else merged
        fake_logits, _ = pair.d(fake)
        terms["inpaint/g_adv"] = lc.inpaint_adv_weight * L.adversarial_g(
            lc.gan_loss, fake_logits.float(), hole
        )
        terms["inpaint/l1"] = lc.l1_weight * L.masked_l1(out, image, mask, lc.l1_hole_weight)
        if self.vgg_losses is not None:
            # One VGG pass on the merged result serves both losses (the reference runs a
            # second pass on masked inputs for style; on a CPU that doubles the step time).
            perceptual, style = self.vgg_losses(merged, image)
            terms["inpaint/perceptual"] = lc.perceptual_weight * perceptual
            terms["inpaint/style"] = lc.style_weight * style
        if lc.tv_weight > 0:
            terms["inpaint/tv"] = lc.tv_weight * L.total_variation(merged)
        if lc.gradient_weight > 0:
            terms["inpaint/gradient"] = lc.gradient_weight * L.hole_gradient_l1(out, image, mask)
        d_inputs["inpaint"] = (image, fake, hole)

    def _mix_true_edges(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        """Predicted edges, replaced by the true ones for a ``train.true_edge_prob`` share of the
        samples: G2 then learns that following the edge guide pays, so drawn or better
        predicted edges steer the fill, while still learning to cope with predicted ones.
        (Stage joint; with a frozen G1 the data workers make the same choice.)"""
        p = self.cfg.train.true_edge_prob
        if p <= 0:
            return pred
        pick = torch.rand(len(pred), 1, 1, 1, device=pred.device) < p
        return torch.where(pick, true.to(pred.dtype), pred)

    def discriminator_losses(self, d_inputs: dict[str, tuple]) -> Terms:
        """Each discriminator on one batch of [real; detached fake] (one spectral-norm update)."""
        terms: Terms = {}
        with self._autocast():
            for name, (real, fake, hole) in d_inputs.items():
                pair = self.pairs[name]
                pair.d.requires_grad_(True)
                logits, _ = pair.d_run(torch.cat([real, fake.detach()], 0))
                real_logits, fake_logits = logits.float().chunk(2)
                terms[f"{name}/d"] = L.adversarial_d(
                    self.cfg.loss.gan_loss, real_logits, fake_logits, hole
                )
        return terms

    def update(self, loss: torch.Tensor, which: str) -> bool:
        """Backward, then step the generators' ('g') or discriminators' ('d') optimisers.

        Skipped (returns False) when the loss or any gradient is not finite. Under DDP the
        backward always runs (every rank must join the gradient all-reduce) and the verdict is
        all-reduced, so all ranks skip or step together and stay identical.
        """
        opts = [p.opt_g if which == "g" else p.opt_d for p in self.pairs.values()]
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        grads = [q.grad for o in opts for g in o.param_groups for q in g["params"]]
        flags = [torch.isfinite(loss.detach()).all()]
        flags += [torch.isfinite(gr).all() for gr in grads if gr is not None]
        ok = torch.stack(flags).all().float()
        if self.world > 1:
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        if ok.item() < 1:
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            return False
        for opt in opts:
            opt.step()
        return True

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One iteration. A non-finite generator loss skips the whole iteration (no update of
        any network, EMA included); a non-finite discriminator loss skips the D update."""
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        g_terms, d_inputs = self.generator_losses(batch)
        g_ok = self.update(_total(g_terms), "g")
        logs = {k: float(v.detach()) for k, v in g_terms.items()}
        d_ok = False
        if g_ok:
            d_terms = self.discriminator_losses(d_inputs)
            d_ok = self.update(_total(d_terms), "d")
            logs |= {k: float(v.detach()) for k, v in d_terms.items()}
        bad = ", ".join(k for k, v in logs.items() if not math.isfinite(v)) or "gradients"
        if not g_ok:
            logs |= {f"{name}/d": math.nan for name in d_inputs}  # keeps the CSV columns
        if g_ok and d_ok:
            self.nonfinite = 0
        else:
            self.nonfinite += 1
            skipped = "discriminator update" if g_ok else "step"
            self._log_event(
                f"step {self.step + 1}: non-finite {bad}; {skipped} skipped "
                f"({self.nonfinite} in a row)"
            )
            if self.nonfinite >= self.cfg.train.max_nonfinite:
                raise EdgefillError(
                    f"stopping: {self.nonfinite} consecutive steps with non-finite losses "
                    "(train.max_nonfinite); the last checkpoint is intact. "
                    "Lower train.lr or check the data, then --resume"
                )
        for p in self.pairs.values():
            p.sched_g.step()
            p.sched_d.step()
            if g_ok and p.ema is not None:
                # Warm-up: a fixed 0.999 would keep the random init for thousands of steps.
                decay = min(self.cfg.train.ema_decay, (1 + self.step) / (10 + self.step))
                ema_update(p.ema, p.g, decay)
        self.step += 1
        return logs

    # -- validation -----------------------------------------------------------

    def _eval_generator(self, name: str) -> nn.Module | None:
        if name in self.pairs:
            p = self.pairs[name]
            return p.ema if p.ema is not None else p.g
        return self.frozen_edge if name == "edge" else None

    @torch.no_grad()
    def validate(
        self, samples: list[dict[str, torch.Tensor]]
    ) -> tuple[dict[str, float], list[torch.Tensor]]:
        """Scores on the fixed validation crops; returns metrics and sample-grid rows.

        Grid columns: masked input, mask, edges used (black on white), result, truth.
        """
        g1, g2 = self._eval_generator("edge"), self._eval_generator("inpaint")
        was = [(m, m.training) for m in (g1, g2) if m is not None]
        for m, _ in was:
            m.eval()
        sums: dict[str, float] = {}
        rows = []
        for i in range(0, len(samples), 8):
            batch = {k: v.to(self.device) for k, v in collate(samples[i : i + 8]).items()}
            mask = batch["mask"]
            if self.stage == "inpaint" or g1 is None:
                edges = composite(batch["edges_known"], batch["edges_full"], mask)
            else:
                edges = composite(batch["edges_known"], g1(sample_edge_input(batch)), mask)
                for k, v in edge_scores(edges, batch["edges_full"], mask).items():
                    sums[f"edge_{k}"] = sums.get(f"edge_{k}", 0.0) + v * len(mask)
            out = batch["image"] * (1 - mask) + mask
            if g2 is not None:
                m = self.cfg.model
                guide = m.edge_guide if g1 is None or self.stage == "inpaint" else 0.0
                filled = fill_batch(m.hole_fill, batch["image"], mask, edges, guide)
                copy = None
                if m.exemplar:
                    copy = fill_batch(
                        EXEMPLAR,
                        batch["image"],
                        mask,
                        edges,
                        guide,
                        thin_fsr=self.cfg.train.thin_fsr,
                    )
                x = inpaint_input(filled, mask, edges, m.hole_fill, copy)
                pred = g2(x).clamp(0, 1)
                out = pred * mask + batch["image"] * (1 - mask)
                scores = {
                    "psnr": psnr(out, batch["image"]),
                    "ssim": ssim(out, batch["image"]),
                    "l1": l1(out, batch["image"]),
                }
                if self.lpips is not None:
                    scores["lpips"] = self.lpips(out, batch["image"])
                for k, v in scores.items():
                    sums[k] = sums.get(k, 0.0) + float(v.sum())
            if len(rows) < 4:
                masked = batch["image"] * (1 - mask) + mask
                rows.append(
                    torch.cat(
                        [
                            masked[0],
                            mask[0].expand(3, -1, -1),
                            (1 - edges[0]).expand(3, -1, -1),
                            out[0],
                            batch["image"][0],
                        ],
                        2,
                    ).cpu()
                )
        for m, training in was:
            m.train(training)
        n = max(len(samples), 1)
        return {k: v / n for k, v in sums.items()}, rows

    def _better(self, metrics: dict[str, float]) -> bool:
        """Best-by-validation: LPIPS (lower) if available, else PSNR, else edge F1 (higher)."""
        if "lpips" in metrics:
            score = -metrics["lpips"]
        elif "psnr" in metrics:
            score = metrics["psnr"]
        else:
            score = metrics.get("edge_f1", 0.0)
        if self.best is None or score > self.best:
            self.best = score
            return True
        return False

    # -- logging --------------------------------------------------------------

    def _log_event(self, text: str) -> None:
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            with open(self.out / "events.log", "a") as fh:
                fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
            if self.show_progress:
                from tqdm import tqdm

                tqdm.write(f"edgefill: {text}")

    def _append_csv(self, name: str, row: dict[str, Any]) -> None:
        if self.rank != 0:
            return
        path = self.out / name
        new = not path.exists()
        if not new:
            with open(path) as fh:
                header = fh.readline().strip().split(",")
            if header != list(row):
                # A new metric appeared (e.g. LPIPS once the VGG is present): start a new file.
                path.rename(path.with_name(f"{path.stem}.{int(time.time())}{path.suffix}"))
                new = True
        with open(path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)

    def _drop_log_rows_after(self, step: int) -> None:
        """Remove the rows of train_log.csv and val_log.csv past ``step``: a run stopped after its
        last checkpoint logged steps that the resumed run trains and logs again."""
        if self.rank != 0:
            return
        for name in ("train_log.csv", "val_log.csv"):
            path = self.out / name
            if not path.exists():
                continue
            lines = path.read_text().splitlines(keepends=True)
            keep = lines[:1] + [ln for ln in lines[1:] if int(ln.split(",", 1)[0]) <= step]
            if len(keep) < len(lines):
                path.write_text("".join(keep))
                self._log_event(f"{name}: dropped {len(lines) - len(keep)} rows after step {step}")

    def _scalars(self, prefix: str, values: dict[str, float]) -> None:
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"{prefix}/{k}", v, self.step)

    def _save_grid(self, rows: list[torch.Tensor]) -> None:
        if self.rank != 0 or not rows:
            return
        from edgefill.image import save_image, to_uint8

        grid = torch.cat(rows, 1)
        save_image(self.out / "samples" / f"step_{self.step:08d}.png", to_uint8(grid[None]))
        if self.tb is not None:
            self.tb.add_image("samples", grid.clamp(0, 1), self.step)

    def _open_tensorboard(self) -> None:
        if self.rank != 0:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard not installed: CSV logs only
            return
        self.tb = SummaryWriter(str(self.out / "tensorboard"), purge_step=self.step or None)

    # -- loop -------------------------------------------------------------------

    def fit(self, resume: bool = False, max_steps: int | None = None) -> dict[str, float]:
        """Train until ``train.max_steps`` (or ``max_steps``, or a stop signal); returns the last
        validation scores. Each step: ``train_step`` (optimise), then ``_after_step`` (log,
        validate, save on their schedules)."""
        t = self.cfg.train
        self._start_run(resume)
        end = min(t.max_steps, max_steps if max_steps is not None else t.max_steps)
        val = self._validation_set()
        if end == 0 and self.step == 0:
            # No step to take: the start itself (e.g. --init adapted to a new option such as
            # model.exemplar) is validated and saved, so that `edgefill export` can release it.
            if val:
                self.metrics = self._validation(val, grid=True)
            self.save(best=bool(val))
            return self.metrics
        loader = self._loader()
        for p in self.pairs.values():
            p.g.train()
            p.d.train()
        self._open_tensorboard()
        from tqdm import tqdm

        bar = tqdm(
            total=end,
            initial=self.step,
            disable=not self.show_progress or self.rank != 0,
            dynamic_ncols=True,
        )
        self._tic, self._seen = time.perf_counter(), 0
        self.metrics: dict[str, float] = {}
        it = iter(loader)
        stop = StopRequest()
        try:
            with stop:
                while self.step < end and not stop.requested:
                    logs = self.train_step(next(it))
                    self._after_step(logs, end, val, bar, bool(stop.requested))
        finally:
            _shut_down_workers(it)
            bar.close()
            if self.tb is not None:
                self.tb.close()
                self.tb = None
        if stop.requested:
            self._log_event(
                f"stopped by {stop.requested} at step {self.step} (checkpoint written); "
                "continue with --resume"
            )
        if self.world > 1:
            dist.barrier()  # every rank returns once rank 0's last checkpoint is written
        return self.metrics

    def _after_step(
        self, logs: dict[str, float], end: int, val: list, bar: Any, stopping: bool
    ) -> None:
        """Log, validate and checkpoint as the schedule says; always log and checkpoint at the
        end or a stop, and validate at the end but not at a stop (a stop should be quick: a
        validation takes minutes on a CPU, and ``--resume`` goes on from the checkpoint)."""
        t = self.cfg.train
        self._seen += t.batch_size * self.world
        bar.update(1)
        last = self.step == end or stopping
        if self.step % t.log_every == 0 or last:
            self._log_train(logs, bar)
        best = False
        if (self.step % t.val_every == 0 or (last and not stopping)) and val:
            self.metrics = self._validation(val, grid=self.step % t.sample_every == 0 or last)
            best = self._better(self.metrics)
        if self.step % t.save_every == 0 or last or best:
            self.save(best=best)

    def _start_run(self, resume: bool) -> None:
        """Resume from the run's last checkpoint, or refuse to overwrite one; write config.yaml."""
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
        if resume:
            if latest_checkpoint(self.out) is None:
                raise EdgefillError(f"--resume: no checkpoint in {self.out / CKPT_DIR}")
            # The newest checkpoint that loads; torn or foreign ones are skipped and named.
            last, state, bad = latest_intact_checkpoint(self.out)
            for line in bad:
                self._log_event(f"skipped a bad checkpoint: {line}")
                if not self.show_progress and self.rank == 0:
                    print(f"edgefill: warning: skipped a bad checkpoint: {line}", file=sys.stderr)
            try:
                self.load_state(state)
            except (KeyError, TypeError, ValueError, RuntimeError) as exc:
                raise EdgefillError(
                    f"{last}: cannot resume from this checkpoint ({type(exc).__name__}: "
                    f"{' '.join(str(exc).split())[:200]})"
                ) from None
            lr = self._generator_lr()
            self._log_event(f"resumed from {last.name} at step {self.step} (learning rate {lr:g})")
            self._drop_log_rows_after(self.step)
        elif latest_checkpoint(self.out) is not None:
            raise EdgefillError(
                f"{self.out} already holds a run; pass --resume to continue it or choose another --out"
            )
        if self.rank == 0:
            (self.out / "config.yaml").write_text(_yaml(to_dict(self.cfg)))

    def _validation_set(self) -> list[dict[str, torch.Tensor]]:
        """The fixed validation crops (rank 0 only; other ranks never validate)."""
        if self.rank != 0:
            return []
        cfg = self.cfg
        val = validation_samples(
            self.val_files,
            cfg.data.val_size or cfg.data.crop_size,
            cfg.model.canny_sigma,
            edge_hole_fill=cfg.model.edge_hole_fill,
        )
        if not val:
            self._log_event("no validation photos (data.val_fraction): no scores, best.pt, samples")
        return val

    def _loader(self) -> DataLoader:
        """Batches from the current step on, this rank's share (resumes where the run stopped)."""
        t, workers = self.cfg.train, self.cfg.data.num_workers
        sampler = StepSampler(
            len(self.dataset), t.batch_size, t.seed, self.step, self.rank, self.world
        )
        return DataLoader(
            self.dataset,
            batch_size=t.batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=collate,
            persistent_workers=workers > 0,
            pin_memory=self.device.type == "cuda",
            # Its own generator: starting the iterator must not consume the global RNG, or a
            # resumed run's RNG state would drift from an uninterrupted one.
            generator=torch.Generator().manual_seed(t.seed),
            worker_init_fn=_init_worker,
        )

    def _validation(self, val: list[dict[str, torch.Tensor]], grid: bool) -> dict[str, float]:
        """Score the validation set; log to val_log.csv and TensorBoard; a sample grid if ``grid``."""
        metrics, rows = self.validate(val)
        self._append_csv(
            "val_log.csv", {"step": self.step, **{k: round(v, 6) for k, v in metrics.items()}}
        )
        self._scalars("val", metrics)
        if grid:
            self._save_grid(rows)
        return metrics

    def _log_train(self, logs: dict[str, float], bar: Any) -> None:
        """Training losses and throughput to the progress bar, train_log.csv and TensorBoard."""
        rate = self._seen / max(time.perf_counter() - self._tic, 1e-9)
        lr = self._generator_lr()
        short = {k.replace("inpaint/", "").replace("edge/", "e_"): v for k, v in logs.items()}
        bar.set_postfix({k: f"{v:.3g}" for k, v in short.items()} | {"img/s": f"{rate:.2f}"})
        self._append_csv(
            "train_log.csv",
            {
                "step": self.step,
                "time": round(time.time(), 1),
                "img_per_s": round(rate, 3),
                "lr": lr,
                **{k: round(v, 6) for k, v in logs.items()},
            },
        )
        self._scalars("train", logs | {"img_per_s": rate, "lr": lr})
        self._tic, self._seen = time.perf_counter(), 0

    def _generator_lr(self) -> float:
        """The generators' learning rate from this step on (all pairs share the schedule; a
        branch resumed with another ``train.lr_decay_steps`` shows its new rate here)."""
        pair = next(iter(self.pairs.values()))
        return float(f"{pair.opt_g.param_groups[0]['lr']:.4g}")

    def release(
        self, out_dir: str | Path, half: bool = True, edge_state: dict | None = None
    ) -> Path:
        """Export the (EMA) generators of this run as a release folder."""
        e = edge_state
        if e is None:
            if "edge" in self.pairs:
                e = self.pairs["edge"].release_state()
            elif self.frozen_edge is not None:
                e = self.frozen_edge.state_dict()
        if e is None or "inpaint" not in self.pairs:
            raise EdgefillError(
                "a release needs both generators; pass the other one with --edge-from"
            )
        info = {"stage": self.stage, "steps": self.step}
        return save_release(
            out_dir, e, self.pairs["inpaint"].release_state(), self.cfg.model, info, half
        )


def _yaml(d: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(d, sort_keys=False)


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    half: bool = True,
    edge_from: str | None = None,
    use_best: bool = True,
    base: str | Path | None = None,
) -> Path:
    """Release weights from a run folder (best checkpoint if any, else the latest).

    A run of stage ``inpaint`` has no edge generator (and one of stage ``edge`` no image
    generator): ``edge_from`` names a run, checkpoint or release that supplies the missing one.

    ``base``: the release the run was fine-tuned from. The export then keeps what that release
    chose beyond its weights, its RELEASE_SETTINGS (a run trains with its own, e.g. the copy
    guide at 1 and no copy detail) and its G2 for drawn edges, and takes from it the generator
    the run lacks unless ``edge_from`` is given: the result is the base with the run's
    generators in place of its own. A run that trained a G2 for drawn edges (``--init-drawn``)
    puts it in the place of the base's G2 for drawn edges; the base's own G2 stays.
    """
    run = Path(run_dir)
    best = run / CKPT_DIR / "best.pt"
    path = best if use_best and best.is_file() else latest_checkpoint(run)
    if path is None:
        raise EdgefillError(f"{run}: no checkpoints to export")
    ck = load_training_checkpoint(path)
    cfg = from_dict(ck["config"])
    pairs = ck["pairs"]

    def gen(pair: dict[str, Any]) -> dict[str, torch.Tensor]:
        return pair.get("ema", pair["g"])

    model, drawn = cfg.model, None
    info: dict[str, Any] = {} if ck.get("init") is None else {"init": ck["init"]}
    if ck.get("init_drawn"):
        info["init_drawn"] = True
    if base is not None:
        model, drawn = _base_release(Path(base), cfg.model)
        info["base"] = str(base)
        if drawn is not None:
            info["drawn_from"] = f"{base} (its G2 for drawn edges)"
        edge_from = edge_from or str(base)
        if ck.get("init_drawn") and "inpaint" in pairs:  # the run's G2 is one for drawn edges
            drawn = gen(pairs["inpaint"])
            info["drawn_from"] = f"{run} ({path.name})"
            pairs = {k: v for k, v in pairs.items() if k != "inpaint"}  # G2 from edge_from

    if "edge" in pairs:
        edge = gen(pairs["edge"])
    elif ck.get("frozen_edge") is not None:
        edge = ck["frozen_edge"]
    elif edge_from:
        edge = load_generator_from(edge_from, "edge")
    else:
        raise EdgefillError(
            f"{run} has no edge generator (stage {ck['stage']}); pass --edge-from RUN_OR_WEIGHTS"
        )
    if "inpaint" in pairs:
        inpaint = gen(pairs["inpaint"])
    elif edge_from:
        inpaint = load_generator_from(edge_from, "inpaint")
    else:
        raise EdgefillError(
            f"{run} has no image generator (stage {ck['stage']}); pass --edge-from with one that has"
        )
    info |= {"stage": ck["stage"], "steps": ck["step"], "checkpoint": path.name}
    return save_release(out_dir, edge, inpaint, model, info, half, drawn)


def _base_release(
    base: Path, model: ModelConfig
) -> tuple[ModelConfig, dict[str, torch.Tensor] | None]:
    """``model`` with ``base``'s RELEASE_SETTINGS, and ``base``'s G2 for drawn edges (or None)."""
    if not is_weights_folder(base) or is_reference_folder(base):
        raise EdgefillError(f"{base}: --base must be a release folder (made by `edgefill export`)")
    base_model = read_release_config(base)[0]
    if not same_architecture(model, base_model):
        raise EdgefillError(
            f"{base}: its architecture differs from the run's ({base_model} vs {model}); "
            "--base names the release the run was fine-tuned from"
        )
    drawn = load_drawn_generator(base, base_model)
    model = replace(model, **release_settings(base_model))
    return model, None if drawn is None else drawn.state_dict()


def forgotten_base(release: str | Path) -> tuple[str, list[str]]:
    """The release ``release``'s run started from (``--init``) and what ``release``, exported
    without ``base``, lacks of it: inference settings it set apart, its G2 for drawn edges."""
    ours, doc = read_release_config(release)
    init = doc.get("init")
    # A G2 for drawn edges exported alone is meant for attach-drawn, which keeps its settings.
    if "base" in doc or doc.get("init_drawn") or not init or not Path(init, CONFIG_FILE).is_file():
        return "", []
    theirs = read_release_config(init)[0]
    if not same_architecture(ours, theirs):  # e.g. a G2 given the copy: --base would not fit
        return "", []
    ours, theirs = release_settings(ours), release_settings(theirs)
    lost = [f"{k} {theirs[k]} (here {v})" for k, v in ours.items() if v != theirs[k]]
    if (Path(init) / DRAWN_FILE).is_file() and not (Path(release) / DRAWN_FILE).is_file():
        lost.append("G2 for drawn edges")
    return init, lost


def distributed_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment, or (0, 1, 0)."""
    return (
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def run_training(
    cfg: Config,
    stage: str,
    data: str,
    out: str | Path,
    resume: bool = False,
    device: str | None = None,
    edge_weights: str | None = None,
    init: str | None = None,
    max_steps: int | None = None,
    init_drawn: bool = False,
) -> dict[str, float]:
    """Entry point shared by the CLI and torchrun; sets up the process group when launched by it."""
    rank, world, local = distributed_env()
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if world > 1:
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend)
        if dev.type == "cuda":
            dev = torch.device("cuda", local)
            torch.cuda.set_device(dev)
    try:
        trainer = Trainer(
            cfg, stage, data, Path(out), dev, edge_weights, init, init_drawn, rank, world
        )
        return trainer.fit(resume=resume, max_steps=max_steps)
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
