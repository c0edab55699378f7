"""Damage detection: tune the classical detector, train the network, score both, draw examples.

Synthetic damage (``edgefill.detect.synth_damage``) is drawn over 256 px centre crops of photos;
its ground truth is known. Tuning and training use only the training split of
``edgefill.data.split(list_images(DATA), 0.1)``; scores are on the validation split.

    python benchmarks/bench_detect.py tune                       # classical thresholds (train)
    python benchmarks/bench_detect.py train --out ~/edgefill-runs/detector --steps 3500
    python benchmarks/bench_detect.py export ~/edgefill-runs/detector
    python benchmarks/bench_detect.py eval --json docs/detect_results.json
    python benchmarks/bench_detect.py examples --out /tmp/detect-examples.png
    python benchmarks/bench_detect.py restore-eval --json docs/restore_results.json
    python benchmarks/bench_detect.py restore-demo --out /tmp/restore-demo.png

Scores: pixel precision / recall / F1 / IoU summed over all validation photos, per kind
(scratches = line-like damage, spots = dust and stains, auto = both; for one kind the pixels of
the other kind are ignored), and the fraction of pixels flagged on the *clean* photos.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from edgefill.data import center_square, list_images, split
from edgefill.detect import (
    BLOB,
    LINE,
    ClassicalParams,
    Damage,
    _cached_detector,
    classical_scores,
    detect_classical,
    detect_net,
    grow_mask,
    line_mask,
    load_detector,
    mask_scores,
    save_detector,
    spot_mask,
    summarise,
    synth_damage,
    train_detector,
)
from edgefill.image import load_rgb, save_image

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-samples"
KIND_GT = {"scratches": LINE, "spots": BLOB, "auto": None}


def cases(files: list[Path], size: int, seed: int) -> list[tuple[np.ndarray, Damage]]:
    """(clean crop, damaged crop) for each photo; damage from rng([seed, i])."""
    out = []
    for i, f in enumerate(files):
        rgb, _ = load_rgb(f)
        clean = center_square(rgb, size)
        out.append((clean, synth_damage(clean, np.random.default_rng([seed, i]))))
    return out


def score(pred: np.ndarray, d: Damage, kind: str) -> dict[str, float]:
    """Counts for ``kind``; pixels damaged by the other kind are ignored."""
    label = KIND_GT[kind]
    if label is None:
        return mask_scores(pred, d.mask)
    care = (d.labels == 0) | (d.labels == label)
    return mask_scores(pred & care, (d.labels == label) & care)


# ----------------------------------------------------------------------------- tune


def tune(args: argparse.Namespace) -> None:
    """Grid-search the classical detector on the training photos (IoU per kind)."""
    train, _ = split(list_images(args.data), 0.1)
    rng = np.random.default_rng(0)
    files = [train[i] for i in rng.permutation(len(train))[: args.n]]
    data = cases(files, args.size, seed=101)
    best: dict[str, tuple[float, ClassicalParams]] = {}
    base = ClassicalParams()
    for lr, ll, ctx in itertools.product([2, 3], [11, 17, 25], [15, 31]):
        p0 = replace(base, line_radius=lr, line_length=ll, line_context=ctx)
        sc = [classical_scores(d.image, p0)[:2] for _, d in data]
        for lk, lm, grow in itertools.product(
            [1, 1.5, 2, 3, 4], [0.03, 0.045, 0.06, 0.09, 0.12, 0.16], [0, 1]
        ):
            p = replace(p0, line_k=lk, line_min=lm, grow=grow)
            counts = [
                score(grow_mask(line_mask(s[0], s[1], p), grow), d, "scratches")
                for s, (_, d) in zip(sc, data, strict=True)
            ]
            iou = summarise(counts)["iou"]
            if iou > best.get("scratches", (-1, p))[0]:
                best["scratches"] = (iou, p)
        print(f"line r={lr} len={ll} ctx={ctx}: best IoU {best['scratches'][0]:.4f}", flush=True)
    for sr, ctx in itertools.product([3, 4, 6], [15, 31]):
        p0 = replace(best["scratches"][1], spot_radius=sr, spot_context=ctx)
        sc = [classical_scores(d.image, p0)[2:] for _, d in data]
        for sk, sm, area in itertools.product(
            [1.5, 2, 3, 4, 6], [0.03, 0.045, 0.06, 0.09, 0.12], [50, 100, 150, 300]
        ):
            p = replace(p0, spot_k=sk, spot_min=sm, spot_max_area=area)
            counts = [
                score(grow_mask(spot_mask(s[0], s[1], p), p.grow), d, "spots")
                for s, (_, d) in zip(sc, data, strict=True)
            ]
            iou = summarise(counts)["iou"]
            if iou > best.get("spots", (-1, p))[0]:
                best["spots"] = (iou, p)
        print(f"spot r={sr} ctx={ctx}: best IoU {best['spots'][0]:.4f}", flush=True)
    ls, ss = best["scratches"][1], best["spots"][1]
    merged = replace(
        ls,
        spot_radius=ss.spot_radius,
        spot_k=ss.spot_k,
        spot_min=ss.spot_min,
        spot_max_area=ss.spot_max_area,
        spot_context=ss.spot_context,
    )
    print("tuned (train IoU):", {k: round(v[0], 4) for k, v in best.items()})
    print(json.dumps(asdict(merged)))


# ----------------------------------------------------------------------------- train / export


def train(args: argparse.Namespace) -> None:
    files, _ = split(list_images(args.data), 0.1)
    train_detector(files, args.out, steps=args.steps, seed=args.seed)


def export(args: argparse.Namespace) -> None:
    ck = torch.load(Path(args.run) / "last.pt", map_location="cpu", weights_only=True)
    from edgefill.detect import DamageNet

    net = DamageNet(int(ck["width"]))
    net.load_state_dict(ck["model"])
    info = {
        "format": 1,
        "architecture": "DamageNet (tiny U-Net, outputs: line-like, blob-like damage)",
        "width": int(ck["width"]),
        "parameters": sum(p.numel() for p in net.parameters()),
        "steps": int(ck["step"]),
        "grow": args.grow,
        "data": "synthetic damage over the training split of ../shared/data/imagenet-samples",
    }
    out = save_detector(net, args.output, info)
    print(f"wrote {out}")


# ----------------------------------------------------------------------------- eval


def detectors(args: argparse.Namespace) -> dict:
    found = {"classical": lambda rgb, kind, s: detect_classical(rgb, kind, s)}
    if args.weights or Path(_default_weights()).joinpath("config.json").is_file():
        net, info = (
            load_detector(args.weights) if args.weights else _cached_detector(_default_weights())
        )
        grow = int(info.get("grow", 0))
        found["net"] = lambda rgb, kind, s: detect_net(rgb, kind, s, net=net, grow=grow)
    else:
        print("no detector weights: scoring the classical detector only", file=sys.stderr)
    return found


def _default_weights() -> str:
    from edgefill.detect import DETECTOR_WEIGHTS

    return str(DETECTOR_WEIGHTS)


def evaluate(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    _, val = split(list_images(args.data), 0.1)
    val = val[: args.n] if args.n else val
    data = cases(val, args.size, seed=args.seed)
    gt_frac = float(np.mean([d.mask.mean() for _, d in data]))
    results: dict = {
        "photos": len(data),
        "size": args.size,
        "seed": args.seed,
        "damaged_fraction": gt_frac,
        "methods": {},
    }
    for name, fn in detectors(args).items():
        res: dict = {}
        for sens in args.sensitivities:
            t0 = time.perf_counter()
            row = {}
            for kind in ("scratches", "spots", "auto"):
                counts = [score(fn(d.image, kind, sens), d, kind) for _, d in data]
                row[kind] = {k: round(v, 4) for k, v in summarise(counts).items()}
            clean_fp = float(np.mean([fn(c, "auto", sens).mean() for c, _ in data]))
            row["clean_flagged"] = round(clean_fp, 5)
            row["seconds_per_photo"] = round((time.perf_counter() - t0) / (4 * len(data)), 4)
            res[f"{sens:g}"] = row
            a = row["auto"]
            print(
                f"{name:9s} s={sens:<4g} auto P={a['precision']:.3f} R={a['recall']:.3f} "
                f"IoU={a['iou']:.3f} | scratches IoU={row['scratches']['iou']:.3f} "
                f"R={row['scratches']['recall']:.3f} | spots IoU={row['spots']['iou']:.3f} "
                f"R={row['spots']['recall']:.3f} | clean flagged {100 * clean_fp:.2f}%",
                flush=True,
            )
        results["methods"][name] = res
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")


# ----------------------------------------------------------------------------- examples


def examples(args: argparse.Namespace) -> None:
    """Rows: clean, damaged, truth, then each detector (green hit, red false alarm, blue miss)."""
    if args.photo:
        picks = [Path(p) for p in args.photo]
    else:
        _, val = split(list_images(args.data), 0.1)
        picks = [val[i] for i in args.indices]
    data = cases(picks, args.size, seed=args.seed)
    fns = detectors(args)
    rows = []
    for clean, d in data:
        truth = np.zeros_like(clean)
        truth[d.labels == LINE] = (255, 255, 255)
        truth[d.labels == BLOB] = (255, 200, 0)
        tiles = [clean, d.image, truth]
        for fn in fns.values():
            m = fn(d.image, "auto", args.sensitivity)
            ov = (d.image * 0.6).astype(np.uint8)
            ov[m & d.mask] = (0, 220, 0)
            ov[m & ~d.mask] = (255, 0, 0)
            ov[~m & d.mask] = (40, 90, 255)
            tiles.append(ov)
        rows.append(np.concatenate(tiles, 1))
    save_image(args.out, np.concatenate(rows, 0), quality=85)
    print(f"wrote {args.out} (columns: clean, damaged, truth, {', '.join(fns)})")


# ----------------------------------------------------------------------------- end to end


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def restore_eval(args: argparse.Namespace) -> None:
    """PSNR to the clean photo: damaged, restored with each detector, restored with the truth."""
    from edgefill.pipeline import Inpainter
    from edgefill.restore import restore

    torch.set_num_threads(args.threads)
    inpainter = Inpainter.from_pretrained(args.inpaint_weights)
    _, val = split(list_images(args.data), 0.1)
    val = val[: args.n] if args.n else val
    data = cases(val, args.size, seed=args.seed)
    rows: dict[str, list[float]] = {"damaged (no repair)": []}
    for clean, d in data:
        rows["damaged (no repair)"].append(_psnr(d.image, clean))
        for name in ("classical", "net"):
            r = restore(d.image, inpainter=inpainter, method=name)
            rows.setdefault(f"restore, {name} detector", []).append(_psnr(r.image, clean))
        r = restore(d.image, d.mask, inpainter)
        rows.setdefault("restore, true mask", []).append(_psnr(r.image, clean))
    print(f"PSNR (dB) to the clean photo, mean over {len(data)} validation photos:")
    for name, v in rows.items():
        print(f"  {name:28s} {np.mean(v):6.2f}")
    if args.json:
        doc = {k: round(float(np.mean(v)), 3) for k, v in rows.items()}
        Path(args.json).write_text(json.dumps({"photos": len(data), "psnr": doc}, indent=2) + "\n")


def restore_demo(args: argparse.Namespace) -> None:
    """Synthetic damage on one photo -> ``restore`` (detector) -> damaged | restored image."""
    from edgefill.pipeline import Inpainter
    from edgefill.restore import restore as run_restore
    from edgefill.restore import side_by_side

    clean, d = cases([Path(args.photo)], args.size, seed=args.seed)[0]
    r = run_restore(d.image, inpainter=Inpainter.from_pretrained(args.inpaint_weights))
    save_image(args.out, side_by_side(d.image, r.image), quality=85)
    print(
        f"wrote {args.out}: PSNR to the clean photo {_psnr(d.image, clean):.2f} dB damaged, "
        f"{_psnr(r.image, clean):.2f} dB restored; {100 * r.mask.mean():.2f} % of pixels repaired"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--size", type=int, default=256)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("tune")
    p.add_argument("--n", type=int, default=48, help="training photos used")
    p.set_defaults(func=tune)
    p = sub.add_parser("train")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=3500)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=train)
    p = sub.add_parser("export")
    p.add_argument("run")
    p.add_argument("-o", "--output", default="src/edgefill/weights/detector")
    p.add_argument("--grow", type=int, default=0)
    p.set_defaults(func=export)
    p = sub.add_parser("eval")
    p.add_argument("--n", type=int, default=0, help="validation photos (0 = all)")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--weights", help="detector folder (default: the shipped one)")
    p.add_argument("--sensitivities", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json")
    p.set_defaults(func=evaluate)
    p = sub.add_parser("examples")
    p.add_argument("--indices", type=int, nargs="+", default=[0, 2, 5, 9])
    p.add_argument("--photo", nargs="+", help="these photos instead of validation photos")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--sensitivity", type=float, default=0.5)
    p.add_argument("--weights")
    p.add_argument("--out", default="/tmp/detect-examples.png")
    p.set_defaults(func=examples)
    p = sub.add_parser("restore-eval")
    p.add_argument("--n", type=int, default=0, help="validation photos (0 = all)")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--inpaint-weights", help="inpainting release (default: the shipped one)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json")
    p.set_defaults(func=restore_eval)
    p = sub.add_parser("restore-demo")
    p.add_argument("--photo", default="examples/astronaut.jpg")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--inpaint-weights")
    p.add_argument("--out", default="/tmp/restore-demo.png")
    p.set_defaults(func=restore_demo)
    args = ap.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
