"""Inference (and training) speed, memory and quality of the fast paths: numbers for docs/performance.md.

    nice -n 15 .venv/bin/python benchmarks/bench_inference.py all --json docs/perf_results.json
    .venv/bin/python benchmarks/bench_inference.py latency --widths 32   # one part, small model
    .venv/bin/python benchmarks/bench_inference.py quality --weights DIR # LPIPS with real weights

Parts: ``peak`` (FLOPs per pixel, measured GEMM rate, theoretical peak), ``latency`` (each case
in its own subprocess: seconds and peak RSS), ``folder`` (CLI folder throughput, 256 px photos),
``train`` (training images/s), ``quality`` (LPIPS of the default fast path against the naive fp32
whole-image forward on validation photos), ``ablation`` (each inference variant on one generator,
interleaved), ``cli`` (the ``edgefill inpaint`` command on the 4000x3000 JPEG, process start to file
written); ``compile`` (torch.compile vs eager, not in ``all``); ``shipped`` (the shipped release
itself, PatchMatch copy included, on the 512 px and 4000x3000 cases of issue 14). Speed otherwise
uses random weights of the plain architecture (speed does not depend on them); quality needs
trained weights (``--weights``, else the shipped default, else random weights with a warning in
the output).

Photos: the ImageNet samples of ``../shared/data`` (``--data`` another folder of *.JPEG); without
any, synthetic ones, with a warning, and each row's ``photo_file`` says which was timed.

"naive" is what the reference EdgeConnect code does: the whole photo at full size through both
generators in fp32, plain torch modules (instance norm as written). It runs in the same
invocation as the fast paths, so ratios are comparable even on a busy machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
# The photos timed; ``--data`` sets it for the run and its worker processes (through the env).
DATA_ENV = "EDGEFILL_BENCH_PHOTOS"
DATA = Path(os.environ.get(DATA_ENV) or ROOT.parent / "shared" / "data" / "imagenet-samples")
SIZES = (256, 512, 1024)
BIG = (3000, 4000)  # h, w of the scratch case
VARIANTS = ("naive", "torch-fp32", "torch-bf16", "onnx-fp32")


# ----------------------------------------------------------------------------- inputs


def photo_files() -> list[Path]:
    return sorted(DATA.glob("*.JPEG")) if DATA.is_dir() else []


def set_photos(folder: Path) -> None:
    """Time the photos in ``folder``, here and in the worker processes started after."""
    global DATA
    DATA = folder
    os.environ[DATA_ENV] = str(folder)


def photo_name(index: int) -> str:
    """Which photo ``photo(..., index)`` is: its file name, or "synthetic" without data."""
    files = photo_files()
    return files[index % len(files)].name if files else "synthetic"


def photo(h: int, w: int, index: int = 0) -> np.ndarray:
    """A real photo (ImageNet sample) centre-cropped to the aspect and resized to h x w."""
    from edgefill.image import load_rgb

    files = photo_files()
    if not files:  # no data: a synthetic photo with texture (main warns, rows say "synthetic")
        rng = np.random.default_rng(index)
        small = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    rgb, _ = load_rgb(files[index % len(files)])
    ih, iw = rgb.shape[:2]
    aspect = w / h
    if iw / ih > aspect:
        cw = round(ih * aspect)
        rgb = rgb[:, (iw - cw) // 2 : (iw - cw) // 2 + cw]
    else:
        ch = round(iw / aspect)
        rgb = rgb[(ih - ch) // 2 : (ih - ch) // 2 + ch]
    interp = cv2.INTER_AREA if rgb.shape[0] > h else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(rgb, (w, h), interpolation=interp))


def mask(kind: str, h: int, w: int, seed: int = 0) -> np.ndarray:
    from edgefill.masks import irregular_mask, scratch_mask

    rng = np.random.default_rng(seed)
    if kind == "irregular20":
        return irregular_mask(h, w, rng, (0.18, 0.22))
    if kind == "scratch1":  # thin (1-3 px) scratches until about 1 % of the photo is covered
        m = np.zeros((h, w), bool)
        while m.mean() < 0.01:
            m |= scratch_mask(h, w, rng, count=2)
        return m
    raise ValueError(kind)


def models(width: int, blocks: int, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    from edgefill.networks import EdgeGenerator, InpaintGenerator

    torch.manual_seed(seed)
    return EdgeGenerator(width, blocks), InpaintGenerator(width, blocks)


# ----------------------------------------------------------------------------- FLOPs and peak


def conv_flops_per_pixel(net: nn.Module, in_ch: int, size: int = 64) -> float:
    """FLOPs (2 x multiply-accumulates of every conv / transposed conv) per input pixel."""
    total = 0

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.ConvTranspose2d):
            total += inp[0].numel() * m.out_channels * m.kernel_size[0] * m.kernel_size[1]
        else:
            total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    handles = [
        m.register_forward_hook(hook)
        for m in net.modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
    ]
    with torch.inference_mode():
        net.eval()(torch.rand(1, in_ch, size, size))
    for h in handles:
        h.remove()
    return 2 * total / (size * size)


def gemm_rate(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    """Best GFLOP/s of an n x n matmul: a practical ceiling on this machine, right now."""
    a, b = torch.rand(n, n, dtype=dtype), torch.rand(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def cpu_info() -> dict[str, Any]:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    info = {
        k.strip(): v.strip() for k, v in (ln.split(":", 1) for ln in out.splitlines() if ":" in ln)
    }
    flags = info.get("Flags", "").split()
    cores = int(info.get("Core(s) per socket", "1")) * int(info.get("Socket(s)", "1"))
    ghz = float(info.get("BogoMIPS", "0")) / 2000 or 2.0  # BogoMIPS = 2 x TSC MHz on x86
    fp32 = cores * ghz * (2 * 16 * 2 if "avx512f" in flags else 2 * 8 * 2)  # 2 FMA ports
    amx = cores * ghz * 1024 if "amx_bf16" in flags else None  # 1024 bf16 FLOP/cycle/core
    return {
        "model": info.get("Model name"),
        "cores": cores,
        "ghz_assumed": ghz,
        "avx512": "avx512f" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "peak_fp32_gflops": round(fp32),
        "peak_bf16_amx_gflops": round(amx) if amx else None,
    }


def part_peak(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    out: dict[str, Any] = {"cpu": cpu_info(), "threads": args.threads, "flops_per_pixel": {}}
    for w, b in args.model_sizes:
        g1, g2 = models(w, b)
        out["flops_per_pixel"][f"{w}/{b}"] = {
            "edge": conv_flops_per_pixel(g1, 3),
            "inpaint": conv_flops_per_pixel(g2, 4),
        }
    out["gemm_gflops"] = {
        "fp32": round(gemm_rate(torch.float32)),
        "bf16": round(gemm_rate(torch.bfloat16)),
    }
    return out


# ----------------------------------------------------------------------------- latency worker


class Timed:
    """Wraps an engine (or a module call) to add up model seconds and processed pixels;
    ``copy_seconds`` adds up the PatchMatch copy's (``timed_runner``)."""

    def __init__(self, fn: Any):
        self.fn, self.seconds, self.cpu_seconds, self.copy_seconds = fn, 0.0, 0.0, 0.0
        self.pixels = {"edge": 0, "inpaint": 0}

    def __call__(self, which: str, x: torch.Tensor) -> torch.Tensor:
        t, c = time.perf_counter(), time.process_time()
        y = self.fn(which, x)
        self.seconds += time.perf_counter() - t
        self.cpu_seconds += time.process_time() - c
        self.pixels[which] = self.pixels.get(which, 0) + x.shape[-1] * x.shape[-2]
        return y

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fn, name)


def naive_runner(width: int, blocks: int) -> tuple[Any, Timed]:
    """The reference's inference with random weights of the given size."""
    from edgefill.config import ModelConfig

    return naive_runner_from(*models(width, blocks), ModelConfig().canny_sigma)


def fast_runner(width: int, blocks: int, variant: str, strategy: str) -> tuple[Any, Timed]:
    from edgefill.config import ModelConfig
    from edgefill.pipeline import Inpainter

    backend, precision = variant.split("-")
    cfg = ModelConfig(width=width, edge_blocks=blocks, inpaint_blocks=blocks)
    inp = Inpainter.from_modules(
        *models(width, blocks), cfg, backend=backend, precision=precision, hd_strategy=strategy
    )
    return timed_runner(inp)


def shipped_runner(
    weights: str | None, strategy: str, drawn_from: np.ndarray | None = None
) -> tuple[Any, Timed]:
    """A release as users get it (``None``: the shipped one), whatever its design. With
    ``drawn_from`` (the photo) its own Canny edges are drawn into the hole: the path of a user
    who edits the edges (no G1, the copy follows them, the release's G2 for drawn edges)."""
    from edgefill.evaluate import true_edge_guide
    from edgefill.pipeline import Inpainter

    inp = Inpainter.from_pretrained(weights, hd_strategy=strategy)
    guide = None if drawn_from is None else true_edge_guide(drawn_from, inp.config.canny_sigma)
    return timed_runner(inp, guide)


def timed_runner(inp: Any, guide: np.ndarray | None = None) -> tuple[Any, Timed]:
    """``inp.inpaint_arrays`` as a run function, its engine and its exemplar copy (single-threaded
    PatchMatch, which runs beside G1 in its own thread) wrapped in ``Timed``."""
    timed = Timed(inp.engine)
    inp.engine = timed
    copy = inp.exemplar_copy

    def timed_copy(*args: Any, **kwargs: Any) -> np.ndarray:
        t = time.perf_counter()
        out = copy(*args, **kwargs)
        timed.copy_seconds += time.perf_counter() - t
        return out

    inp.exemplar_copy = timed_copy
    return (lambda rgb, hole: inp.inpaint_arrays(rgb, hole, guide)[0]), timed


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(case: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(case["threads"])
    h, w = case["size"]
    rgb = photo(h, w, case.get("photo", 3))
    hole = mask(case["mask"], h, w, case.get("seed", 0))
    t = time.perf_counter()
    if case["variant"] == "shipped":
        drawn_from = rgb if case.get("drawn") else None
        run, timed = shipped_runner(case.get("weights"), case["strategy"], drawn_from)
    elif case["variant"] == "naive":
        run, timed = naive_runner(case["width"], case["blocks"])
    else:
        run, timed = fast_runner(case["width"], case["blocks"], case["variant"], case["strategy"])
    load_s = time.perf_counter() - t
    rss_loaded = rss_mb()
    walls, cpus, models_s, models_cpu_s, copies_s = [], [], [], [], []
    for i in range(case["reps"] + case["warmup"]):
        timed.seconds = timed.cpu_seconds = timed.copy_seconds = 0.0
        timed.pixels = {"edge": 0, "inpaint": 0}
        c, t = time.process_time(), time.perf_counter()
        out = run(rgb, hole)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        if i >= case["warmup"]:
            walls.append(wall)
            cpus.append(cpu)
            models_s.append(timed.seconds)
            models_cpu_s.append(timed.cpu_seconds)
            copies_s.append(timed.copy_seconds)
    assert np.array_equal(out[~hole], rgb[~hole])
    return {
        **case,
        "photo_file": photo_name(case.get("photo", 3)),
        "hole_ratio": float(hole.mean()),
        "load_s": load_s,
        "wall_s": walls,
        "cpu_s": cpus,
        "model_s": models_s,
        "model_cpu_s": models_cpu_s,
        "copy_s": copies_s,
        "pixels": timed.pixels,
        "rss_loaded_mb": rss_loaded,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_worker(case: dict[str, Any], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", json.dumps(case)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**case, "error": f"timed out after {timeout:.0f} s"}
    if p.returncode != 0:
        return {**case, "error": (p.stderr.strip().splitlines() or ["?"])[-1][:300]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def latency_cases(args: argparse.Namespace) -> list[dict[str, Any]]:
    cases = []
    base = {"threads": args.threads, "warmup": 1}
    for width, blocks in args.model_sizes:
        for s in args.sizes:
            for v in args.variants:
                reps = args.reps if (s <= 512 or v != "naive") else 1
                cases.append(
                    {
                        **base,
                        "width": width,
                        "blocks": blocks,
                        "size": [s, s],
                        "mask": "irregular20",
                        "variant": v,
                        "strategy": "crop",
                        "reps": reps,
                    }
                )
            if s >= 1024 and "torch-bf16" in args.variants:  # precision alone, no window gain
                cases.append({**cases[-1], "variant": "torch-bf16", "strategy": "original"})
                cases[-1]["reps"] = 1
        if args.big:
            for v in args.variants:
                if v == "naive" and not args.naive_big:
                    continue  # ~10-20 GB and many minutes: extrapolated from 1024 px instead
                cases.append(
                    {
                        **base,
                        "width": width,
                        "blocks": blocks,
                        "size": list(BIG),
                        "mask": "scratch1",
                        "variant": v,
                        "strategy": "crop",
                        "reps": args.reps if v != "naive" else 1,
                    }
                )
    return cases


def part_latency(args: argparse.Namespace, flops: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for case in latency_cases(args):
        r = run_worker(case, args.timeout)
        key = f"{case['width']}/{case['blocks']}"
        if "error" not in r and key in flops:
            fp = flops[key]
            r["gflop"] = (
                fp["edge"] * r["pixels"]["edge"] + fp["inpaint"] * r["pixels"]["inpaint"]
            ) / 1e9
        rows.append(r)
        print(fmt_latency(r), flush=True)
    return rows


def part_shipped(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The release (``--weights``, default the shipped one) on issue 14's two speed cases: three
    512 px photos with a 20 % hole (with G1's edges, then with the photo's own edges drawn into
    the hole) and the 4000x3000 photo with 1 % thin scratches."""
    base = {"threads": args.threads, "warmup": 1, "reps": args.reps, "variant": "shipped"}
    base.update({"strategy": "crop", "weights": args.weights, "width": "shipped", "blocks": 0})
    cases = [
        {**base, "size": [512, 512], "mask": "irregular20", "photo": i, "seed": i} for i in range(3)
    ]
    cases += [{**c, "drawn": True} for c in cases]
    if args.big:
        cases.append({**base, "size": list(BIG), "mask": "scratch1", "photo": 0, "seed": 0})
    rows = []
    for case in cases:
        r = run_worker(case, args.timeout)
        rows.append(r)
        print(fmt_latency(r), flush=True)
    return rows


def fmt_latency(r: dict[str, Any]) -> str:
    tag = f"{r['width']}/{r['blocks']} {r['size'][1]}x{r['size'][0]} {r['variant']} {r['strategy']}"
    if r["variant"] == "shipped":
        tag = f"shipped release {r['size'][1]}x{r['size'][0]} {r['mask']} photo {r['photo']}"
        tag += ", drawn edges" if r.get("drawn") else ""
    if "error" in r:
        return f"{tag}: ERROR {r['error']}"
    wall, cpu = min(r["wall_s"]), min(r["cpu_s"])
    model = min(r["model_s"])
    model_cpu = min(r.get("model_cpu_s") or [float("nan")])
    extra = ""
    if any(r.get("copy_s") or []):
        extra += f", PatchMatch copy {min(r['copy_s']):.2f} s (one core)"
    if r.get("gflop"):
        extra += f", {r['gflop']:.0f} GFLOP: {r['gflop'] / model_cpu:.0f} GFLOP per CPU-s"
    return (
        f"{tag}: wall {wall:.2f} s (median {statistics.median(r['wall_s']):.2f}), cpu {cpu:.2f} s, "
        f"model {model:.2f} s wall / {model_cpu:.2f} s cpu{extra}, peak RSS {r['peak_rss_mb']:.0f} MB"
    )


# ----------------------------------------------------------------------------- folder


def part_folder(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [
        run_worker(
            {
                "part": "folder",
                "width": w,
                "blocks": b,
                "precision": p,
                "threads": args.threads,
                "n": args.folder_n,
            },
            args.timeout,
        )
        for w, b in args.model_sizes
        for p in ("fp32", "auto")
    ]


def folder_worker(case: dict[str, Any]) -> dict[str, Any]:
    from edgefill.checkpoint import save_release
    from edgefill.cli import main
    from edgefill.config import ModelConfig
    from edgefill.image import load_rgb, save_image
    from edgefill.masks import load_mask
    from edgefill.pipeline import Inpainter

    torch.set_num_threads(case["threads"])
    tmp = Path(tempfile.mkdtemp(prefix="edgefill-bench-"))
    try:
        cfg = ModelConfig(
            width=case["width"], edge_blocks=case["blocks"], inpaint_blocks=case["blocks"]
        )
        g1, g2 = models(case["width"], case["blocks"])
        rel = save_release(tmp / "rel", g1.state_dict(), g2.state_dict(), cfg)
        for i in range(case["n"]):
            save_image(tmp / "photos" / f"{i:03d}.jpg", photo(256, 256, i))
            save_image(
                tmp / "masks" / f"{i:03d}.png",
                mask("irregular20", 256, 256, i).astype(np.uint8) * 255,
            )
        argv = ["inpaint", str(tmp / "photos"), "--mask", str(tmp / "masks"), "--weights", str(rel)]
        argv += ["--precision", case["precision"], "-o"]
        main([*argv, str(tmp / "warm")])  # warm-up: first-call costs and file cache
        t = time.perf_counter()
        assert main([*argv, str(tmp / "out")]) == 0
        overlapped = time.perf_counter() - t
        # The same work one file at a time, no overlap (model loaded once, as above).
        t = time.perf_counter()
        inp = Inpainter.from_pretrained(rel, precision=case["precision"])
        for i in range(case["n"]):
            rgb, _ = load_rgb(tmp / "photos" / f"{i:03d}.jpg")
            hole = load_mask(tmp / "masks" / f"{i:03d}.png", (256, 256))
            image, _ = inp.inpaint_arrays(rgb, hole)
            save_image(tmp / "seq" / f"{i:03d}.png", image)
        sequential = time.perf_counter() - t
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        **case,
        "overlapped_img_s": case["n"] / overlapped,
        "sequential_img_s": case["n"] / sequential,
    }


# ----------------------------------------------------------------------------- CLI end to end


def part_cli(args: argparse.Namespace) -> list[dict[str, Any]]:
    """`edgefill inpaint` on the 4000x3000 JPEG with scratches: process start to PNG written."""
    from edgefill.checkpoint import save_release
    from edgefill.config import ModelConfig
    from edgefill.image import save_image

    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="edgefill-cli-"))
    try:
        h, w = BIG
        save_image(tmp / "photo.jpg", photo(h, w, 3))
        save_image(tmp / "mask.png", mask("scratch1", h, w).astype(np.uint8) * 255)
        for width, blocks in args.model_sizes:
            cfg = ModelConfig(width=width, edge_blocks=blocks, inpaint_blocks=blocks)
            g1, g2 = models(width, blocks)
            rel = save_release(tmp / f"rel{width}", g1.state_dict(), g2.state_dict(), cfg)
            for out in ("out.png", "out.jpg"):
                cmd = [sys.executable, "-m", "edgefill.cli", "inpaint", str(tmp / "photo.jpg")]
                cmd += [
                    "--mask",
                    str(tmp / "mask.png"),
                    "--weights",
                    str(rel),
                    "-o",
                    str(tmp / out),
                    "--overwrite",  # each repetition replaces the previous result
                ]
                env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
                best = None
                for _ in range(args.reps):
                    t = time.perf_counter()
                    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
                    _, status, usage = os.wait4(proc.pid, 0)
                    wall = time.perf_counter() - t
                    assert status == 0, f"edgefill exited with {status}"
                    run = {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024}
                    best = run if best is None or wall < best["wall_s"] else best
                row = {"width": width, "blocks": blocks, "output": out, **(best or {})}
                rows.append(row)
                print(row, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


# ----------------------------------------------------------------------------- training


def part_train(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for w, b, crop, bs, steps in ((32, 4, 128, 8, 3), (64, 8, 256, 4, 2)):
        if (w, b) not in args.model_sizes:
            continue
        for stage in ("edge", "inpaint"):
            for amp in ("fp32", "bf16"):
                case = {"part": "train", "width": w, "blocks": b, "crop": crop, "batch": bs}
                case |= {"steps": steps, "stage": stage, "amp": amp, "threads": args.threads}
                r = run_worker(case, args.timeout)
                rows.append(r)
                print(r, flush=True)
    return rows


def train_worker(case: dict[str, Any]) -> dict[str, Any]:
    from edgefill.config import load_config
    from edgefill.data import collate
    from edgefill.train import Trainer

    sets = [
        f"model.width={case['width']}",
        f"model.edge_blocks={case['blocks']}",
        f"model.inpaint_blocks={case['blocks']}",
        f"data.crop_size={case['crop']}",
        f"train.batch_size={case['batch']}",
        f"train.amp={case['amp']}",
        f"train.threads={case['threads']}",
    ]
    cfg = load_config(None, sets)
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(cfg, case["stage"], str(DATA), Path(tmp), show_progress=False)
        bs = case["batch"]
        batches = [
            collate([tr.dataset[(i % len(tr.dataset), 1000 * s + i)] for i in range(bs)])
            for s in range(case["steps"] + 1)
        ]
        for p in tr.pairs.values():
            p.g.train()
            p.d.train()
        tr.train_step(batches[0])  # warm-up
        t = time.perf_counter()
        for batch in batches[1:]:
            tr.train_step(batch)
        dt = time.perf_counter() - t
    return {**case, "img_s": bs * case["steps"] / dt, "s_per_step": dt / case["steps"]}


# ----------------------------------------------------------------------------- ablation


def part_ablation(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [
        run_worker(
            {
                "part": "ablation",
                "width": w,
                "blocks": b,
                "size": 256,
                "threads": args.threads,
                "reps": args.reps + 2,
            },
            args.timeout,
        )
        for w, b in args.model_sizes
    ]


def ablation_worker(case: dict[str, Any]) -> dict[str, Any]:
    """One generator (G2) at 256 px, each inference variant tried, rounds interleaved."""
    from edgefill.backends import OnnxEngine, TorchEngine
    from edgefill.networks import fuse_for_inference
    from edgefill.onnx_export import export_generators

    torch.set_num_threads(case["threads"])
    g1, g2 = models(case["width"], case["blocks"])
    plain = copy.deepcopy(g2).eval()
    plain_cl = copy.deepcopy(g2).eval().to(memory_format=torch.channels_last)
    g1, g2 = fuse_for_inference(g1).eval(), fuse_for_inference(g2).eval()
    fused_cl = copy.deepcopy(g2).to(memory_format=torch.channels_last)
    bf16 = TorchEngine(g1, g2, torch.device("cpu"), "bf16")
    bf16_all = copy.deepcopy(g2).to(torch.bfloat16)  # no fp32 head, NCHW
    onnx = OnnxEngine(dict(export_generators(g1, g2)), case["threads"])
    x = torch.rand(1, 4, case["size"], case["size"])
    xcl = x.contiguous(memory_format=torch.channels_last)

    def autocast_cl() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return plain_cl(xcl)

    variants = {
        "fp32 as written (InstanceNorm2d)": lambda: plain(x),
        "fp32 fused norm (group-norm kernel)": lambda: g2(x),
        "fp32 fused norm, channels_last": lambda: fused_cl(xcl),
        "bf16 autocast, channels_last, InstanceNorm2d": autocast_cl,
        "bf16 weights, NCHW, no fp32 head": lambda: bf16_all(x.to(torch.bfloat16)),
        "bf16 weights, channels_last, fp32 head (kept)": lambda: bf16("inpaint", x),
        "onnxruntime fp32": lambda: onnx("inpaint", x),
    }
    out: dict[str, Any] = dict(case)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    with torch.inference_mode():
        ref = plain(x)
        for k, f in variants.items():
            y = f().float()
            out[k] = {
                "max_abs_diff": float((y - ref).abs().max()),
                "mean_abs_diff": float((y - ref).abs().mean()),
            }
        for _ in range(case["reps"]):
            for k, f in variants.items():
                c, t = time.process_time(), time.perf_counter()
                f()
                times[k].append((time.perf_counter() - t, time.process_time() - c))
    for k, ts in times.items():
        out[k] |= {"wall_s": min(t[0] for t in ts), "cpu_s": min(t[1] for t in ts)}
    return out


# ----------------------------------------------------------------------------- torch.compile


def part_compile(args: argparse.Namespace) -> list[dict[str, Any]]:
    w, b = args.model_sizes[0]
    case = {"part": "compile", "width": w, "blocks": b, "size": 256, "threads": args.threads}
    return [run_worker(case, args.timeout)]


def compile_worker(case: dict[str, Any]) -> dict[str, Any]:
    """Eager vs torch.compile (inductor) on the image generator: compile time and steady time."""
    from edgefill.backends import TorchEngine
    from edgefill.networks import fuse_for_inference

    torch.set_num_threads(case["threads"])
    # A cold compile, as a user's first run has: no inductor / FX-graph cache from earlier runs.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="edgefill-inductor-")
    g1, g2 = (fuse_for_inference(m).eval() for m in models(case["width"], case["blocks"]))
    x = torch.rand(1, 4, case["size"], case["size"])
    out: dict[str, Any] = dict(case)
    with torch.inference_mode():
        ref = g2(x)
    for precision in ("fp32", "bf16"):
        eng = TorchEngine(g1, g2, torch.device("cpu"), precision)
        for mode in ("eager", "compile"):
            net = eng.nets["inpaint"]
            if mode == "compile":
                net = torch.compile(net, dynamic=False)
            xx = x.to(eng.dtype).contiguous(memory_format=eng.memory_format)
            with torch.inference_mode():
                t = time.perf_counter()
                y = net(xx).float()
                first = time.perf_counter() - t
                steady = []
                for _ in range(3):
                    c = time.process_time()
                    t = time.perf_counter()
                    net(xx)
                    steady.append((time.perf_counter() - t, time.process_time() - c))
            out[f"{precision}-{mode}"] = {
                "first_call_s": first,
                "wall_s": min(s[0] for s in steady),
                "cpu_s": min(s[1] for s in steady),
                "max_abs_diff_vs_fp32_eager": float((y - ref).abs().max()),
            }
    return out


# ----------------------------------------------------------------------------- quality


def part_quality(args: argparse.Namespace) -> dict[str, Any]:
    case = {
        "part": "quality",
        "weights": args.weights,
        "n": args.quality_n,
        "size": args.quality_size,
        "threads": args.threads,
    }
    return run_worker(case, args.timeout * 4)


def quality_worker(case: dict[str, Any]) -> dict[str, Any]:
    from edgefill.checkpoint import DEFAULT_WEIGHTS, load_release
    from edgefill.data import list_images, split
    from edgefill.image import load_rgb, to_tensor
    from edgefill.metrics import LPIPS
    from edgefill.pipeline import Inpainter

    torch.set_num_threads(case["threads"])
    weights = case["weights"]
    note = ""
    if weights is None and (DEFAULT_WEIGHTS / "config.json").is_file():
        weights = str(DEFAULT_WEIGHTS)
    if weights is None:
        note = "RANDOM WEIGHTS: re-run with --weights DIR (trained) for a meaningful LPIPS check"
    lp = LPIPS()
    val = split(list_images(DATA), 0.1)[1][: case["n"]]
    s = case["size"]
    variants = ("torch-auto", "torch-fp32", "onnx-fp32")
    if weights:
        g1, g2, cfg, _ = load_release(weights)
        fast = {
            v: Inpainter.from_pretrained(
                weights, backend=v.split("-")[0], precision=v.split("-")[1]
            )
            for v in variants
        }
    else:
        from edgefill.config import ModelConfig

        g1, g2 = models(32, 4)
        cfg = ModelConfig(width=32, edge_blocks=4, inpaint_blocks=4)
        fast = {
            v: Inpainter.from_modules(
                *models(32, 4), cfg, backend=v.split("-")[0], precision=v.split("-")[1]
            )
            for v in variants
        }
    naive, _ = naive_runner_from(g1, g2, cfg.canny_sigma)
    scores: dict[str, list[float]] = {"naive": [], **{v: [] for v in variants}}
    diffs: dict[str, list[float]] = {v: [] for v in variants}
    for i, f in enumerate(val):
        rgb, _ = load_rgb(f)
        h, w = rgb.shape[:2]
        side = min(h, w)
        rgb = rgb[
            (h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side
        ]
        rgb = np.ascontiguousarray(
            cv2.resize(rgb, (s, s), interpolation=cv2.INTER_AREA if side > s else cv2.INTER_CUBIC)
        )
        hole = mask("irregular20", s, s, seed=100 + i)
        truth = to_tensor(rgb)
        ref = naive(rgb, hole)
        with torch.inference_mode():
            scores["naive"].append(float(lp(to_tensor(ref), truth)))
            for v, inp in fast.items():
                out, _ = inp.inpaint_arrays(rgb, hole)
                scores[v].append(float(lp(to_tensor(out), truth)))
                diffs[v].append(float(np.abs(out.astype(int) - ref.astype(int))[hole].mean()))
        print(
            f"{f.name}: " + ", ".join(f"{k} {v[-1]:.4f}" for k, v in scores.items()),
            file=sys.stderr,
            flush=True,
        )
    return {
        **case,
        "weights": weights,
        "note": note,
        "photos": [f.name for f in val],
        "precision_auto": fast["torch-auto"].precision,
        "lpips_mean": {k: float(np.mean(v)) for k, v in scores.items()},
        "lpips_delta_vs_naive": {
            v: float(np.mean(scores[v]) - np.mean(scores["naive"])) for v in variants
        },
        "lpips_abs_delta_max": {
            v: float(np.max(np.abs(np.array(scores[v]) - scores["naive"]))) for v in variants
        },
        "mean_abs_level_diff_in_hole": {v: float(np.mean(d)) for v, d in diffs.items()},
    }


def naive_runner_from(g1: nn.Module, g2: nn.Module, sigma: float) -> tuple[Any, Timed]:
    """The reference's inference (whole image, fp32, modules as defined) for given generators."""
    from edgefill.edges import canny_edges, composite, to_gray
    from edgefill.image import to_tensor
    from edgefill.networks import bake_spectral_norm
    from edgefill.pipeline import pad_to_stride

    nets = {
        "edge": bake_spectral_norm(copy.deepcopy(g1)).eval(),
        "inpaint": copy.deepcopy(g2).eval(),
    }
    timed = Timed(lambda which, x: nets[which](x))

    @torch.no_grad()
    def run(rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
        gray = to_gray(rgb)
        known = canny_edges(gray, hole, sigma)
        g = torch.from_numpy(gray)[None, None]
        m = torch.from_numpy(hole.astype(np.float32))[None, None]
        e = torch.from_numpy(known)[None, None]
        x, (h, w) = pad_to_stride(torch.cat([g * (1 - m) + m, e * (1 - m), m], 1))
        pred = timed("edge", x)[..., :h, :w]
        edges = composite(e, pred, m)
        x, _ = pad_to_stride(torch.cat([to_tensor(rgb) * (1 - m) + m, edges], 1))
        out = timed("inpaint", x)[..., :h, :w]
        out = (out[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        return np.where(hole[..., None], out, rgb)

    return run, timed


# ----------------------------------------------------------------------------- report


def report(results: dict[str, Any]) -> str:
    """Markdown tables of a results file (what docs/performance.md shows)."""
    lines: list[str] = []
    peak = results.get("peak", {})
    fpp = peak.get("flops_per_pixel", {})
    rows = [r for r in results.get("latency", []) if "error" not in r]
    naive = {
        (r["width"], tuple(r["size"])): r
        for r in rows
        if r["variant"] == "naive" and r["strategy"] == "crop"
    }
    if rows:
        lines += [
            "| model | photo | hole | path | wall s | x naive | CPU s | model s | GFLOP | GFLOP/s"
            " | % of peak | peak RSS MB |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        cpu = peak.get("cpu", {})
        for r in rows:
            wall, model = min(r["wall_s"]), min(r["model_s"])
            base = naive.get((r["width"], tuple(r["size"])))
            ratio = f"{min(base['wall_s']) / wall:.1f}" if base else "n/a"
            gflop = r.get("gflop") or float("nan")
            top = cpu.get("peak_bf16_amx_gflops") if "bf16" in r["variant"] else None
            top = top or cpu.get("peak_fp32_gflops") or float("nan")
            path = r["variant"] + ("" if r["variant"] == "naive" else f" {r['strategy']}")
            lines.append(
                f"| {r['width']}/{r['blocks']} | {r['size'][1]}x{r['size'][0]} | "
                f"{r['hole_ratio'] * 100:.1f} % | {path} | {wall:.2f} | {ratio} | "
                f"{min(r['cpu_s']):.2f} | {model:.2f} | {gflop:.0f} | {gflop / model:.0f} | "
                f"{100 * gflop / model / top:.0f} | {r['peak_rss_mb']:.0f} |"
            )
        lines.append("")
    if fpp:
        lines.append(
            "FLOPs per input pixel (conv and transposed-conv MACs x 2): "
            + ", ".join(
                f"{k}: edge {v['edge'] / 1e6:.3f} M, inpaint {v['inpaint'] / 1e6:.3f} M"
                for k, v in fpp.items()
            )
        )
        lines.append("")
    if results.get("folder"):
        lines += [
            "| model | precision | folder img/s (overlapped) | one at a time img/s |",
            "|---|---|---|---|",
        ]
        for r in results["folder"]:
            if "error" in r:
                continue
            lines.append(
                f"| {r['width']}/{r['blocks']} | {r['precision']} | {r['overlapped_img_s']:.2f} | "
                f"{r['sequential_img_s']:.2f} |"
            )
        lines.append("")
    if results.get("train"):
        lines += [
            "| model | crop | batch | stage | amp | img/s | s/step |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in results["train"]:
            if "error" in r:
                continue
            lines.append(
                f"| {r['width']}/{r['blocks']} | {r['crop']} | {r['batch']} | {r['stage']} | "
                f"{r['amp']} | {r['img_s']:.2f} | {r['s_per_step']:.1f} |"
            )
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        case = json.loads(sys.argv[2])
        fn = {
            "folder": folder_worker,
            "train": train_worker,
            "quality": quality_worker,
            "compile": compile_worker,
            "ablation": ablation_worker,
        }.get(case.get("part", ""), worker)
        print(json.dumps(fn(case)))
        return 0
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "part",
        choices=[
            "all",
            "peak",
            "latency",
            "folder",
            "train",
            "quality",
            "compile",
            "ablation",
            "cli",
            "shipped",
            "report",
        ],
    )
    ap.add_argument("--json", help="write all results here (merged into an existing file)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument(
        "--widths", default="64,32", help="model widths: 64 = 64 ch/8 blocks, 32 = 32 ch/4 blocks"
    )
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-big", dest="big", action="store_false", help="skip the 4000x3000 case")
    ap.add_argument(
        "--naive-big", action="store_true", help="also run the naive 4000x3000 (10+ GB)"
    )
    ap.add_argument("--folder-n", type=int, default=16)
    ap.add_argument("--quality-n", type=int, default=12)
    ap.add_argument("--quality-size", type=int, default=512, help="photo side for quality")
    ap.add_argument("--weights", help="release folder for the quality part")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--data", default=str(DATA), help="folder of *.JPEG photos to time")
    args = ap.parse_args()
    set_photos(Path(args.data))
    blocks = {64: 8, 32: 4}
    args.model_sizes = [(int(w), blocks.get(int(w), 4)) for w in args.widths.split(",")]
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.variants = args.variants.split(",")
    results: dict[str, Any] = {}
    if args.json and Path(args.json).is_file():
        results = json.loads(Path(args.json).read_text())
    if args.part == "report":
        print(report(results))
        return 0
    load = os.getloadavg()
    results.setdefault("runs", []).append(
        {
            "command": " ".join(sys.argv),
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            "loadavg_at_start": load,
            "photos": str(DATA) if photo_files() else "synthetic",
        }
    )
    print(f"load average at start: {load}", flush=True)
    if not photo_files():
        print(f"warning: no *.JPEG photos in {DATA}: timing synthetic photos", flush=True)

    def save() -> None:
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1) + "\n")

    if args.part in ("all", "peak", "latency"):
        old = results.get("peak", {}).get("flops_per_pixel", {})
        results["peak"] = part_peak(args)
        results["peak"]["flops_per_pixel"] = {**old, **results["peak"]["flops_per_pixel"]}
        print(json.dumps(results["peak"], indent=1), flush=True)
        save()
    if args.part in ("all", "latency"):
        results.setdefault("latency", [])
        new = part_latency(args, results["peak"]["flops_per_pixel"])
        keys = {
            json.dumps({k: r[k] for k in ("width", "size", "variant", "strategy")}) for r in new
        }
        results["latency"] = [
            r
            for r in results["latency"]
            if json.dumps({k: r[k] for k in ("width", "size", "variant", "strategy")}) not in keys
        ] + new
        save()
    if args.part in ("all", "folder"):
        results["folder"] = part_folder(args)
        print(json.dumps(results["folder"], indent=1), flush=True)
        save()
    if args.part in ("all", "cli"):
        results["cli"] = part_cli(args)
        save()
    if args.part in ("all", "train"):
        results["train"] = part_train(args)
        save()
    if args.part in ("all", "ablation"):
        results["ablation"] = part_ablation(args)
        print(json.dumps(results["ablation"], indent=1), flush=True)
        save()
    if args.part == "compile":  # not in "all": minutes of compilation for a known answer
        results["compile"] = part_compile(args)
        print(json.dumps(results["compile"], indent=1), flush=True)
        save()
    if args.part in ("all", "shipped"):
        results["shipped"] = part_shipped(args)
        save()
    if args.part in ("all", "quality"):
        key = f"quality_{args.quality_size}"
        results[key] = part_quality(args)
        print(json.dumps(results[key], indent=1), flush=True)
        save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
