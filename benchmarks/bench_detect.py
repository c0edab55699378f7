"""Damage detection: tune the classical detector, train the network, score both, draw examples.

Synthetic damage (``edgefill.detect.synth_damage``) is drawn over 256 px centre crops of photos;
its ground truth is known. Tuning and training use only the training split of
``edgefill.data.split(list_images(DATA), 0.1)``; scores are on the validation split.

    python benchmarks/bench_detect.py tune                       # classical thresholds (train)
    python benchmarks/bench_detect.py train --out ~/edgefill-runs/detector --steps 3500
    python benchmarks/bench_detect.py export ~/edgefill-runs/detector
    python benchmarks/bench_detect.py export RUN -o DIR --clean-rate 0.003   # calibrated release
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
    calibrate_detector,
    classical_scores,
    detect_classical,
    detect_net,
    grow_mask,
    line_mask,
    load_detector,
    load_stain_pass,
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


RUN_DATA = "data.json"  # in a run folder: which photos trained it, for the release's "data" note


def data_note(run: str | Path) -> str:
    """The release's "data" note from the run's RUN_DATA (written by ``train``)."""
    path = Path(run) / RUN_DATA
    if not path.exists():
        raise SystemExit(
            f"{run}: no {RUN_DATA} (a run from before it was written): pass --data-note"
        )
    info = json.loads(path.read_text())
    if info["synth"] == "stain":
        damage = "water stains, the other damage types as negatives"
    else:
        damage = f"synthetic damage (`train --synth {info['synth']}`)"
    folders = " and ".join(info["photo_folders"])
    return f"{damage} over the training split (hash rule, 10 % held out) of {folders}"


def train(args: argparse.Namespace) -> None:
    files = [f for d in args.train_data for f in split(list_images(d), 0.1)[0]]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    info = {"photo_folders": [str(d) for d in args.train_data], "synth": args.synth}
    (Path(args.out) / RUN_DATA).write_text(json.dumps(info, indent=2) + "\n")
    skip = []
    if args.hard_negatives and args.hard_skip:  # the photos `export --clean-rate` calibrates on
        skip = [path for path, _ in clean_set(args.train_data, args.hard_skip, set(), "train")]
    train_detector(
        files,
        args.out,
        steps=args.steps,
        seed=args.seed,
        batch=args.batch,
        crop=args.crop,
        width=args.width,
        depth=args.depth,
        synth=args.synth,
        pos_weight=args.pos_weight,
        dice_weight=args.dice_weight,
        init=args.init,
        lr=args.lr,
        kind_odds=dict(args.kind_odds),
        dust_density=args.dust_density,
        hard_negatives=args.hard_negatives,
        hard_odds=args.hard_odds,
        hard_every=args.hard_every,
        hard_per_photo=args.hard_per_photo,
        hard_skip=skip,
        threads=args.threads,
    )


def parse_odds(text: str) -> tuple[str, float]:
    """'hair=0.6' -> ('hair', 0.6): the chance that a scan training crop gets that damage type."""
    from edgefill.damage import DAMAGE_TYPES

    kind, sep, value = text.partition("=")
    try:
        odds = float(value)
    except ValueError:
        odds = -1.0
    if not sep or kind not in DAMAGE_TYPES or not 0 <= odds <= 1:
        raise argparse.ArgumentTypeError(
            f"expected KIND=ODDS with KIND one of {', '.join(DAMAGE_TYPES)} and ODDS in [0, 1], "
            f"got {text!r}"
        )
    return kind, odds


def export(args: argparse.Namespace) -> None:
    note = args.data_note or data_note(args.run)  # before the slow calibration
    ck = torch.load(Path(args.run) / "last.pt", map_location="cpu", weights_only=True)
    from edgefill.detect import DamageNet

    net = DamageNet(int(ck["width"]), int(ck.get("depth", 3)))
    net.load_state_dict(ck["model"])
    if args.clean_rate:
        shift = calibrate_detector(
            net, clean_training_scans(args.dirs, args.n_clean), args.clean_rate
        )
        print(f"calibrated: logit shift {shift:+.3f} for {args.clean_rate:.3%} flagged")
    info = {
        "format": 1,
        "architecture": "DamageNet (tiny U-Net, outputs: line-like, blob-like damage)",
        "width": int(ck["width"]),
        "depth": int(ck.get("depth", 3)),
        "parameters": sum(p.numel() for p in net.parameters()),
        "steps": int(ck["step"]),
        "grow": args.grow,
        "data": note,
    }
    if args.clean_rate:
        info["calibration"] = calibration_note(shift, args)
    out = save_detector(net, args.output, info)
    print(f"wrote {out}")


def calibration_note(shift: float, args: argparse.Namespace) -> dict:
    """How ``calibrate_detector`` set a release's logit shift (its config.json "calibration")."""
    return {
        "logit_shift": round(shift, 4),
        "clean_rate": args.clean_rate,
        "photos": f"{args.n_clean} thin-structure training photos at scan size",
    }


def export_stain(args: argparse.Namespace) -> None:
    """Add a trained stain pass (``train --synth stain``) to a detector release folder,
    calibrated so that it flags ``--clean-rate`` of the clean training scans on its own."""
    from edgefill.detect import DamageNet, at_stain_size, save_stain_pass

    note = args.data_note or data_note(args.run)  # before the slow calibration
    ck = torch.load(Path(args.run) / "last.pt", map_location="cpu", weights_only=True)
    if int(ck.get("outputs", 2)) != 1:
        raise SystemExit(f"{args.run}: not a stain pass (train it with --synth stain)")
    net = DamageNet(int(ck["width"]), int(ck["depth"]), 1)
    net.load_state_dict(ck["model"])
    clean = [at_stain_size(rgb) for rgb in clean_training_scans(args.dirs, args.n_clean)]
    shift = calibrate_detector(net, clean, args.clean_rate)
    print(f"calibrated: logit shift {shift:+.3f} for {args.clean_rate:.3%} flagged")
    info = {
        "width": int(ck["width"]),
        "depth": int(ck["depth"]),
        "parameters": sum(p.numel() for p in net.parameters()),
        "steps": int(ck["step"]),
        "data": note,
        "calibration": calibration_note(shift, args),
    }
    print(f"wrote stain pass into {save_stain_pass(net, args.output, info)}")


def clean_training_scans(dirs: list[str], n: int, seed: int = 7) -> list[np.ndarray]:
    """``n`` clean *training* photos rich in thin structure (the clean set's selection rule) as
    scans (grain, JPEG) at the detector's working size: what the release is calibrated on, so
    its false-alarm rate is never set on the validation photos."""
    from edgefill.damage import scan_effects
    from edgefill.detect import at_work_size

    return [
        at_work_size(scan_effects(as_scan(path), np.random.default_rng([seed, i])))
        for i, (path, _dens) in enumerate(clean_set(dirs, n, set(), "train"))
    ]


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
            detector = args.detector if name == "net" else None
            r = restore(
                d.image, inpainter=inpainter, method=name, repair=args.repair, detector=detector
            )
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
    r = run_restore(
        d.image, inpainter=Inpainter.from_pretrained(args.inpaint_weights), repair=args.repair
    )
    save_image(args.out, side_by_side(d.image, r.image), quality=85)
    print(
        f"wrote {args.out}: PSNR to the clean photo {_psnr(d.image, clean):.2f} dB damaged, "
        f"{_psnr(r.image, clean):.2f} dB restored; {100 * r.mask.mean():.2f} % of pixels repaired"
    )


# ----------------------------------------------------------------------------- realistic scans

EXTRA = DATA.parent / "extra-photos"
SCAN_LONG = 1600  # px: a print scanned at about 300-400 dpi


def val_photos(dirs: list[str], part: str = "val") -> list[Path]:
    """Validation (or training) photos of each folder, interleaved (split rule of edgefill.data)."""
    lists = [split(list_images(d), 0.1)[1 if part == "val" else 0] for d in dirs]
    out = []
    for i in range(max(len(v) for v in lists)):
        out += [v[i] for v in lists if i < len(v)]
    return out


def as_scan(path: Path, long_side: int = SCAN_LONG) -> np.ndarray:
    """The photo at scan resolution (upscaled bicubic: a soft print, as scans of old prints are)."""
    import cv2

    rgb, _ = load_rgb(path)
    h, w = rgb.shape[:2]
    f = long_side / max(h, w)
    return cv2.resize(rgb, (round(w * f), round(h * f)), interpolation=cv2.INTER_CUBIC)


def thin_structure_density(path: Path) -> float:
    """Selection criterion of the clean set: the fraction of pixels with a strong thin-ridge
    response (Sato tubeness, sigmas 1 and 2 px, bright and dark ridges, > 0.04 on grey in
    [0, 1]) at 512 px on the long side: wires, text, railings, branches, lashes."""
    import cv2
    from skimage.filters import sato

    rgb, _ = load_rgb(path)
    h, w = rgb.shape[:2]
    f = 512 / max(h, w)
    g = (
        cv2.cvtColor(
            cv2.resize(rgb, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA),
            cv2.COLOR_RGB2GRAY,
        ).astype(np.float32)
        / 255
    )
    r = np.maximum(
        sato(g, sigmas=[1, 2], black_ridges=True), sato(g, sigmas=[1, 2], black_ridges=False)
    )
    return float((r > 0.04).mean())


def clean_set(
    dirs: list[str], n: int, skip: set[Path], part: str = "val"
) -> list[tuple[Path, float]]:
    pool = val_photos(dirs, part)
    if part != "val":
        pool = pool[:150]  # a sample of the training photos (tuning the release's grow)
    scored = [(p, thin_structure_density(p)) for p in pool if p not in skip]
    scored.sort(key=lambda t: -t[1])
    return scored[:n]


def scan_cases(photos: list[Path], seed: int, per_photo: int = 2):
    """(kind, photo, damaged scan, truth) with one damage type per case; photo i gets types
    i, i + 4, ... (mod 9) so every type meets different photos."""
    from edgefill.damage import DAMAGE_TYPES, render_damage, scan_effects

    for i, path in enumerate(photos):
        clean = as_scan(path)
        for j in range(per_photo):
            kind = DAMAGE_TYPES[(i + 4 * j) % len(DAMAGE_TYPES)]
            rng = np.random.default_rng([seed, i, j])
            sc = render_damage(clean, rng, (kind,))
            yield kind, path, scan_effects(sc.image, rng), sc.mask


def scan_detectors(args: argparse.Namespace) -> dict:
    """name -> fn(rgb) -> DamageMap."""
    from edgefill.detect import analyse_damage

    found = {}
    if not getattr(args, "no_classical", False):
        found["classical"] = lambda rgb: analyse_damage(
            rgb, method="classical", sensitivity=args.sensitivity
        )
    for spec in args.nets:
        name, _, folder = spec.partition("=")
        net, info = load_detector(folder)
        grow = int(info.get("grow", 0)) if args.grow is None else args.grow
        stain = load_stain_pass(folder)

        def fn(rgb, net=net, grow=grow, stain=stain):
            return analyse_damage(
                rgb, sensitivity=args.sensitivity, method="net", net=net, grow=grow, stain=stain
            )

        found[name] = fn
    return found


def near_damage(truth: np.ndarray, reach: int = 3) -> np.ndarray:
    """Pixels within ``reach`` px (a square) of the damage: a flag there is a mask too wide; a
    flag farther out is real content taken for damage."""
    import cv2

    k = np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)
    return cv2.dilate(truth.astype(np.uint8), k) > 0


def scan_eval(args: argparse.Namespace) -> None:
    """Per damage type P / R / IoU on realistic scans (and ``far_share``: the share of the wrongly
    flagged pixels farther than 3 px from the damage); false alarms on the clean thin-structure
    set."""
    from edgefill.damage import DAMAGE_TYPES, scan_effects

    torch.set_num_threads(args.threads)
    photos = val_photos(args.dirs, args.split)[: args.n]
    dets = scan_detectors(args)
    counts = {d: {k: [] for k in DAMAGE_TYPES} for d in dets}
    far = {d: {k: 0.0 for k in DAMAGE_TYPES} for d in dets}  # false alarms away from the damage
    conf_counts = {d: {"confident": [], "uncertain": []} for d in dets}
    secs = {d: 0.0 for d in dets}
    ncase = 0
    for kind, path, img, truth in scan_cases(photos, args.seed):
        ncase += 1
        away = ~near_damage(truth)
        for d, fn in dets.items():
            t0 = time.perf_counter()
            dm = fn(img)
            secs[d] += time.perf_counter() - t0
            counts[d][kind].append(mask_scores(dm.mask, truth))
            far[d][kind] += float(np.count_nonzero(dm.mask & away))
            conf_counts[d]["confident"].append(mask_scores(dm.confident, truth))
            conf_counts[d]["uncertain"].append(mask_scores(dm.uncertain, truth))
        print(f"case {ncase}: {kind} on {path.name}", flush=True)
    clean = clean_set(args.dirs, args.n_clean, set(), args.split)
    flagged = {d: [] for d in dets}
    flagged_conf = {d: [] for d in dets}
    for i, (path, _dens) in enumerate(clean):
        img = scan_effects(as_scan(path), np.random.default_rng([args.seed, 999, i]))
        for d, fn in dets.items():
            dm = fn(img)
            flagged[d].append(float(dm.mask.mean()))
            flagged_conf[d].append(float(dm.confident.mean()))
    res: dict = {
        "damaged_photos": len(photos),
        "cases": ncase,
        "scan_long_side": SCAN_LONG,
        "sensitivity": args.sensitivity,
        "seed": args.seed,
        "split": args.split,
        "clean_set": [{"photo": p.name, "thin_density": round(dn, 4)} for p, dn in clean],
        "detectors": {},
    }
    for d in dets:
        per = {
            k: {m: round(v, 4) for m, v in summarise(c).items()} for k, c in counts[d].items() if c
        }
        for k, c in counts[d].items():
            if c:  # what share of the wrongly flagged pixels is real content, not a wide rim
                per[k]["far_share"] = round(far[d][k] / max(sum(x["fp"] for x in c), 1.0), 4)
        per["all"] = {m: round(v, 4) for m, v in summarise(sum(counts[d].values(), [])).items()}
        res["detectors"][d] = {
            "per_type": per,
            "confident_only": {
                m: round(v, 4) for m, v in summarise(conf_counts[d]["confident"]).items()
            },
            "uncertain_only": {
                m: round(v, 4) for m, v in summarise(conf_counts[d]["uncertain"]).items()
            },
            "clean_flagged": round(float(np.mean(flagged[d])), 6),
            "clean_flagged_confident": round(float(np.mean(flagged_conf[d])), 6),
            "seconds_per_scan": round(secs[d] / max(ncase, 1), 3),
        }
    print(json.dumps(res["detectors"], indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {args.json}")


def scan_timing(args: argparse.Namespace) -> None:
    """Seconds for one 3000x2000 scan (realistic damage), per detector."""
    import cv2

    from edgefill.damage import render_damage, scan_effects

    torch.set_num_threads(args.threads)
    photo = val_photos(args.dirs, args.split)[0]
    rgb, _ = load_rgb(photo)
    big = cv2.resize(rgb, (3000, 2000), interpolation=cv2.INTER_CUBIC)
    rng = np.random.default_rng(0)
    img = scan_effects(render_damage(big, rng, ("scratch_white", "dust", "crack")).image, rng)
    for d, fn in scan_detectors(args).items():
        fn(img)  # warm up (weights, caches)
        t0 = time.perf_counter()
        for _ in range(args.repeat):
            fn(img)
        print(f"{d}: {(time.perf_counter() - t0) / args.repeat:.2f} s per 3000x2000 scan")


def scan_examples(args: argparse.Namespace) -> None:
    """Crops of realistic cases: damaged | truth | each detector (red confident, yellow uncertain,
    blue missed)."""
    import cv2

    from edgefill.damage import render_damage, scan_effects

    photos = val_photos(args.dirs, args.split)
    dets = scan_detectors(args)
    rows = []
    for idx, kinds in zip(args.indices, args.kinds, strict=True):
        clean = as_scan(photos[idx])
        rng = np.random.default_rng([args.seed, idx])
        sc = render_damage(clean, rng, tuple(kinds.split(",")))
        img = scan_effects(sc.image, rng)
        tiles = [img]
        truth = np.zeros_like(img)
        truth[sc.mask] = 255
        tiles.append(truth)
        for fn in dets.values():
            dm = fn(img)
            ov = (img * 0.55).astype(np.uint8)
            ov[~dm.mask & sc.mask] = (40, 90, 255)
            ov[dm.uncertain] = (255, 210, 0)
            ov[dm.confident] = (230, 20, 20)
            tiles.append(ov)
        h, w = img.shape[:2]
        c = args.crop
        y0, x0 = (h - c) // 2, (w - c) // 2
        rows.append(np.concatenate([t[y0 : y0 + c, x0 : x0 + c] for t in tiles], 1))
    sheet = np.concatenate(rows, 0)
    f = args.width / sheet.shape[1]
    sheet = cv2.resize(sheet, (args.width, round(sheet.shape[0] * f)), interpolation=cv2.INTER_AREA)
    save_image(args.out, sheet, quality=82)
    print(f"wrote {args.out} (columns: damaged scan, truth, {', '.join(dets)})")


def review_demo(args: argparse.Namespace) -> None:
    """A realistic damaged scan restored with the shipped models: its review sheet (--report)."""
    import cv2

    from edgefill.damage import render_damage, scan_effects
    from edgefill.pipeline import Inpainter
    from edgefill.restore import restore

    torch.set_num_threads(args.threads)
    photo = val_photos(args.dirs)[args.index]
    clean = as_scan(photo, args.long_side)
    rng = np.random.default_rng([args.seed, args.index])
    sc = render_damage(clean, rng, tuple(args.kinds.split(",")))
    img = scan_effects(sc.image, rng)
    r = restore(img, inpainter=Inpainter.from_pretrained(args.inpaint_weights))
    sheet = r.report_sheet()
    f = min(1.0, args.width / sheet.shape[1])
    sheet = cv2.resize(sheet, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    save_image(args.out, sheet, quality=80)
    s = r.summary()
    print(
        f"wrote {args.out} ({photo.name}): {s['confident_regions']} regions repaired, "
        f"{s['uncertain_regions']} uncertain left alone; damaged pixels {100 * sc.mask.mean():.2f} %, "
        f"repaired {100 * r.mask.mean():.2f} %, recall of the repair "
        f"{(r.mask & sc.mask).sum() / max(sc.mask.sum(), 1):.3f}"
    )


def scan_table(args: argparse.Namespace) -> None:
    """Markdown tables (per damage type P / R / IoU, clean-set false alarms) from scan-eval JSONs."""
    from edgefill.damage import DAMAGE_TYPES

    dets: dict = {}
    for f in args.results:
        dets.update(json.loads(Path(f).read_text())["detectors"])
    names = list(dets)
    print("| damage type | " + " | ".join(f"{n} P / R / IoU" for n in names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for k in [*DAMAGE_TYPES, "all"]:
        cells = []
        for n in names:
            r = dets[n]["per_type"].get(k)
            cells.append(
                "-" if r is None else f"{r['precision']:.2f} / {r['recall']:.2f} / {r['iou']:.3f}"
            )
        print(f"| {k} | " + " | ".join(cells) + " |")
    print()
    print(
        "| detector | clean set flagged | of it confident | confident P / R | uncertain P / R | s per scan |"
    )
    print("|---|---|---|---|---|---|")
    for n in names:
        d = dets[n]
        c, u = d["confident_only"], d["uncertain_only"]
        print(
            f"| {n} | {100 * d['clean_flagged']:.3f} % | {100 * d['clean_flagged_confident']:.3f} % "
            f"| {c['precision']:.2f} / {c['recall']:.2f} | {u['precision']:.2f} / {u['recall']:.2f} "
            f"| {d['seconds_per_scan']:.2f} |"
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
    p.add_argument(
        "--train-data", nargs="+", default=[str(DATA)], help="photo folders (train split)"
    )
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--crop", type=int, default=96)
    p.add_argument("--width", type=int, default=12)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--synth", choices=["simple", "scan", "mix", "stain"], default="simple")
    p.add_argument("--pos-weight", type=float, default=4.0)
    p.add_argument("--dice-weight", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--init", help="start from this released detector folder")
    p.add_argument(
        "--kind-odds",
        nargs="*",
        type=parse_odds,
        default=[],
        metavar="KIND=ODDS",
        help="chance that a scan crop gets a damage type (default tear 0.1, stain 0.12, "
        "craquelure 0.2, others 0.3)",
    )
    p.add_argument(
        "--dust-density", type=float, default=1.0, help="dust specks per area in scan crops, x"
    )
    p.add_argument(
        "--hard-negatives",
        metavar="DETECTOR",
        help="centre --hard-odds of the scan crops on this calibrated detector's false alarms "
        "on the training photos (mined once at the start)",
    )
    p.add_argument("--hard-odds", type=float, default=0.3)
    p.add_argument(
        "--hard-every",
        type=int,
        default=1,
        help="mine one flagged pixel in this many (a photo flagged more gets more crops)",
    )
    p.add_argument("--hard-per-photo", type=int, default=64, help="most spots mined per photo")
    p.add_argument(
        "--hard-skip",
        type=int,
        default=24,
        help="leave this many calibration photos (export --n-clean) out of the mining",
    )
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=train)
    p = sub.add_parser("export")
    p.add_argument("run")
    p.add_argument("-o", "--output", default="src/edgefill/weights/detector")
    p.add_argument("--grow", type=int, default=0)
    p.add_argument(
        "--clean-rate",
        type=float,
        help="calibrate: shift the logits so that this fraction of clean training scans is flagged",
    )
    p.add_argument("--n-clean", type=int, default=24, help="clean training photos to calibrate on")
    p.add_argument("--dirs", nargs="+", default=[str(DATA), str(EXTRA)])
    data_help = "the release's data note (default: from the run's data.json)"
    p.add_argument("--data-note", help=data_help)
    p.set_defaults(func=export)
    p = sub.add_parser("export-stain", help="add a trained stain pass to a release folder")
    p.add_argument("run")
    p.add_argument("-o", "--output", default="src/edgefill/weights/detector")
    p.add_argument("--clean-rate", type=float, default=0.0002, help="the shipped pass: 0.0002")
    p.add_argument("--n-clean", type=int, default=24, help="clean training photos to calibrate on")
    p.add_argument("--dirs", nargs="+", default=[str(DATA), str(EXTRA)])
    p.add_argument("--data-note", help=data_help)
    p.set_defaults(func=export_stain)
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
    p.add_argument("--repair", choices=["all", "confident"], default="all", help="as restore's")
    p.add_argument("--detector", help="detector release for the network row (default: shipped)")
    p.set_defaults(func=restore_eval)
    p = sub.add_parser("restore-demo")
    p.add_argument("--photo", default="examples/astronaut.jpg")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--inpaint-weights")
    p.add_argument("--out", default="/tmp/restore-demo.png")
    p.add_argument("--repair", choices=["all", "confident"], default="all", help="as restore's")
    p.set_defaults(func=restore_demo)
    for name, fn in (
        ("scan-eval", scan_eval),
        ("scan-timing", scan_timing),
        ("scan-examples", scan_examples),
    ):
        p = sub.add_parser(name)
        p.add_argument("--dirs", nargs="+", default=[str(DATA), str(EXTRA)])
        p.add_argument("--nets", nargs="*", default=[], help="NAME=FOLDER of released detectors")
        p.add_argument("--sensitivity", type=float, default=0.5)
        p.add_argument("--seed", type=int, default=2026)
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--grow", type=int, help="rim dilation for every --nets (default: theirs)")
        p.add_argument("--split", choices=["val", "train"], default="val")
        p.set_defaults(func=fn)
        if name == "scan-eval":
            p.add_argument(
                "--n", type=int, default=36, help="damaged validation photos (2 cases each)"
            )
            p.add_argument("--n-clean", type=int, default=30, help="clean thin-structure photos")
            p.add_argument("--no-classical", action="store_true", help="score only --nets")
            p.add_argument("--json")
        if name == "scan-timing":
            p.add_argument("--repeat", type=int, default=2)
        if name == "scan-examples":
            p.add_argument("--indices", type=int, nargs="+", default=[1, 5, 8])
            p.add_argument(
                "--kinds", nargs="+", default=["scratch_white,dust", "craquelure", "crack,hair"]
            )
            p.add_argument("--crop", type=int, default=512)
            p.add_argument("--width", type=int, default=1400)
            p.add_argument("--out", default="/tmp/scan-examples.jpg")
    p = sub.add_parser("review-demo")
    p.add_argument("--dirs", nargs="+", default=[str(DATA), str(EXTRA)])
    p.add_argument("--index", type=int, default=3)
    p.add_argument("--kinds", default="scratch_white,crack,dust,hair")
    p.add_argument("--long-side", type=int, default=1200)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--width", type=int, default=1500)
    p.add_argument("--inpaint-weights")
    p.add_argument("--out", default="/tmp/review-demo.jpg")
    p.set_defaults(func=review_demo)
    p = sub.add_parser("scan-table")
    p.add_argument("results", nargs="+", help="scan-eval JSON files")
    p.set_defaults(func=scan_table)
    args = ap.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
