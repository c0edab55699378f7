"""Batch jobs: a folder or a manifest of photos, run here (``local``) or on a Ray cluster (``ray``).

Both engines call the same per-photo function, ``process_item``, so their outputs are
byte-identical. A job is resumable: every output is written atomically (a file at the output
path is always complete), so a rerun with ``skip_existing`` skips what exists, and a Ray worker
that dies mid-batch has its batch retried, the already-written photos in it being skipped.
A photo that fails is recorded with the reason (failures CSV) and never stops the job.

    job = Job(task="inpaint")
    plan = plan_batch("photos/", "masks/", "out/", "inpaint")
    summary = run_batch(job, plan, engine="ray")   # or engine="local"

Paths may be local or any URL fsspec understands (``s3://``, ``gs://``, ``memory://``, ...);
remote photos are copied to a temp file to be read, remote outputs uploaded after an atomic
local write. docs/scale.md shows how to run on a cluster.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import posixpath
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from edgefill.detect import CONFIDENT, DEFAULT_SENSITIVITY, check_detector
from edgefill.errors import EdgefillError, install_hint
from edgefill.image import (
    DEFAULT_MAX_PIXELS,
    output_format,
    readable_suffixes,
    remove_stale_temps_in,
)
from edgefill.masks import INVERTED_MASK_SHARE

TASKS = ("inpaint", "restore")
ENGINES = ("local", "ray")
STATUSES = ("done", "skipped", "failed")
FAILURE_COLUMNS = ("photo", "mask", "output", "reason")
MAX_RAY_ROUNDS = 3  # a Ray run that loses items (beyond Ray's own retries) is resubmitted
RAY_TASK_RETRIES = 2  # Ray retries a batch whose worker died this many times within a run


@dataclass(frozen=True)
class Item:
    """One photo of a batch: where to read it and its mask, where to write the results."""

    photo: str
    mask: str | None
    output: str
    side_by_side: str | None = None  # restore: a before/after image
    mask_out: str | None = None  # restore: the mask that was repaired
    report: str | None = None  # restore: a review sheet (original | flagged | result)


@dataclass
class ItemResult:
    photo: str
    mask: str | None
    output: str
    status: str  # done | skipped | failed
    reason: str = ""
    seconds: float = 0.0
    hole_share: float = 0.0  # inpaint with a mask: the share of the photo it made the hole


@dataclass(frozen=True)
class Job:
    """What to do with each photo; the model options every worker loads the model with."""

    task: str = "inpaint"
    weights: str | None = None
    device: str = "cpu"
    speed: dict[str, Any] = field(default_factory=dict)  # hd_strategy, backend, precision, ...
    threads: int | None = None
    resize_mask: bool = False
    mask_threshold: int = 1
    max_pixels: int = DEFAULT_MAX_PIXELS
    grow_mask: int = 0  # pixels each given mask is widened by (masks.grow_hole)
    refine: bool = False  # inpaint: --refine; restore: on unless --no-refine
    kind: str = "auto"  # restore: the damage detector's settings
    sensitivity: float = DEFAULT_SENSITIVITY
    method: str = "auto"
    detector: str | None = None  # restore: a released detector folder instead of the shipped one
    repair: str = "confident"  # restore: repair confident regions only, or all flagged ones
    confident_at: float = CONFIDENT
    skip_existing: bool = False
    overwrite: bool = False  # planning refused existing results unless this or skip_existing
    quality: int | None = None  # JPEG/WebP quality of the outputs (``image.save_image``)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise EdgefillError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.threads is not None and self.threads < 1:
            raise EdgefillError(f"--threads must be at least 1, got {self.threads}")
        check_detector(self.method, self.detector)  # refused once here, not once per photo

    def load_model(self) -> Any:
        from edgefill.pipeline import Inpainter

        return Inpainter.from_pretrained(
            self.weights, device=self.device, threads=self.threads, **self.speed
        )


@dataclass
class Plan:
    items: list[Item]
    failures: list[ItemResult]  # photos refused before running (no mask, clashing outputs, ...)
    failures_csv: str
    out_dir: str | None = None  # where the outputs go, for the summary line
    others: list[str] = field(default_factory=list)  # folder files that are not a readable image

    @property
    def total(self) -> int:
        return len(self.items) + len(self.failures)


@dataclass
class Summary:
    total: int
    done: int
    skipped: int
    failed: int
    seconds: float  # wall time of the run, model loading and Ray start included
    startup_seconds: float  # until the first photo finished (model load, Ray actors)
    failures: list[ItemResult]
    failures_csv: str | None  # written when something failed (or an old one was there)
    # Masks whose hole is more than masks.INVERTED_MASK_SHARE of their photo: most likely
    # made with white marking what to keep.
    inverted: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        """Photos written per second of wall time."""
        return self.done / self.seconds if self.seconds > 0 else 0.0


# ----------------------------------------------------------------------------- paths


def _is_url(path: str) -> bool:
    return "://" in path


def _fs(path: str) -> tuple[Any, str]:
    import fsspec

    try:
        return fsspec.core.url_to_fs(path)
    except (ImportError, ValueError) as exc:  # an unknown protocol or its package missing
        raise EdgefillError(f"{path}: cannot open this location ({exc})") from None


def _local_path(path: str) -> str | None:
    """The local file system path of ``path`` (plain or file://), or None for a remote URL."""
    if not _is_url(path):
        return path
    fs, p = _fs(path)
    return p if "file" in _protocols(fs) else None


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name if _is_url(base) else os.path.join(base, name)


def _resolve(path: str, base: str) -> str:
    """A manifest path: absolute paths and URLs as they are, relative ones against ``base``."""
    if _is_url(path) or os.path.isabs(path):
        return path
    return _join(base, path)


def _parent(path: str) -> str:
    return posixpath.dirname(path.rstrip("/")) if _is_url(path) else os.path.dirname(path) or "."


def _beside_folder(folder: str, suffix: str) -> str:
    """The folder next to ``folder`` named after it plus ``suffix``: photos/ and photos give
    photos_inpainted, . gives ../NAME_inpainted (never a folder inside the photos)."""
    if _is_url(folder):
        return _join(_parent(folder), _name(folder) + suffix)
    absolute = os.path.abspath(folder)  # no trailing slash, no "." left to name
    out = os.path.join(os.path.dirname(absolute), os.path.basename(absolute) + suffix)
    return out if os.path.isabs(folder) else os.path.relpath(out)


def _name(path: str) -> str:
    return posixpath.basename(path.rstrip("/"))


def _stem(path: str) -> str:
    return os.path.splitext(_name(path))[0]


def _same(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    la, lb = _local_path(a), _local_path(b)
    if la is not None and lb is not None:
        return os.path.abspath(la) == os.path.abspath(lb)
    return a.rstrip("/") == b.rstrip("/")


def _key(path: str) -> str:
    """One spelling per file, to find two items writing the same output."""
    local = _local_path(path)
    return os.path.abspath(local) if local is not None else path


def _exists(path: str) -> bool:
    local = _local_path(path)
    if local is not None:
        return os.path.exists(local)
    fs, p = _fs(path)
    return bool(fs.exists(p))


def _isdir(path: str) -> bool:
    local = _local_path(path)
    if local is not None:
        return os.path.isdir(local)
    fs, p = _fs(path)
    return bool(fs.isdir(p))


def _list_files(folder: str) -> list[str]:
    """The files directly in a folder, as paths/URLs in the folder's own spelling, sorted."""
    local = _local_path(folder)
    if local is not None:
        names = sorted(e.name for e in os.scandir(local) if e.is_file())
        return [_join(folder, n) for n in names]
    fs, p = _fs(folder)
    entries = fs.ls(p, detail=True)
    names = sorted(_name(e["name"]) for e in entries if e.get("type") == "file")
    return [_join(folder, n) for n in names]


def _images(folder: str) -> list[str]:
    """The files single-photo mode would read (every type Pillow has a plugin for)."""
    suffixes = readable_suffixes()
    return [p for p in _list_files(folder) if os.path.splitext(p)[1].lower() in suffixes]


def _not_images(folder: str) -> list[str]:
    """Files left out of a folder run because this install cannot read their type."""
    suffixes = readable_suffixes()
    return [
        p
        for p in _list_files(folder)
        if os.path.splitext(p)[1].lower() not in suffixes and not _name(p).startswith(".")
    ]


def is_batch_source(src: str | Path) -> bool:
    """True for a folder of photos or a manifest CSV (local or any fsspec URL)."""
    src = str(src)
    return src.lower().endswith(".csv") or _isdir(src)


@contextlib.contextmanager
def _readable(path: str | None) -> Iterator[str | None]:
    """A local file to read ``path`` from: itself, or a temp copy of a remote file."""
    local = None if path is None else _local_path(path)
    if path is None or local is not None:
        yield local
        return
    fs, p = _fs(path)
    with tempfile.TemporaryDirectory(prefix="edgefill-") as tmp:
        copy = os.path.join(tmp, _name(path))
        try:
            fs.get_file(p, copy)
        except FileNotFoundError:
            raise EdgefillError(f"{path}: file not found") from None
        except OSError as exc:
            raise EdgefillError(f"{path}: cannot read it ({exc})") from None
        try:
            yield copy
        except EdgefillError as exc:  # name the user's file, not the temp copy
            raise EdgefillError(str(exc).replace(copy, path)) from None


def _write(path: str, save: Callable[[str], Any]) -> None:
    """Write one output atomically: locally by ``save`` itself (temp file + rename); to a remote
    store by uploading a finished local file (an object appears only once fully uploaded)."""
    local = _local_path(path)
    if local is not None:
        save(local)
        return
    fs, p = _fs(path)
    with tempfile.TemporaryDirectory(prefix="edgefill-") as tmp:
        copy = os.path.join(tmp, _name(path))
        save(copy)
        try:
            fs.put_file(copy, p)
        except OSError as exc:
            raise EdgefillError(f"{path}: could not upload the result ({exc})") from None


# ----------------------------------------------------------------------------- planning


def _failed(photo: str, mask: str | None, output: str, reason: str) -> ItemResult:
    return ItemResult(photo, mask, output, "failed", reason)


def _extra(folder: str | None, output: str, suffix: str = ".png") -> str | None:
    return None if folder is None else _join(folder, _stem(output) + suffix)


def _beside(output: str) -> str:
    """The default place of a restored photo's mask: ``masks/STEM.png`` next to the result."""
    return _join(_join(_parent(output), "masks"), _stem(output) + ".png")


def _item(
    photo: str,
    mask: str | None,
    output: str,
    side_by_side: str | None,
    mask_out: str | None,
    report: str | None,
    mask_beside: bool,
) -> Item:
    used = _extra(mask_out, output) or (_beside(output) if mask_beside else None)
    return Item(
        photo, mask, output, _extra(side_by_side, output), used, _extra(report, output, ".jpg")
    )


def _add(
    items: list[Item],
    failures: list[ItemResult],
    claimed: dict[str, str],
    item: Item,
) -> None:
    """Queue ``item`` unless an output is unwritable, clashes with another one or is an input."""
    outputs = [p for p in (item.output, item.side_by_side, item.mask_out, item.report) if p]
    if len({_key(p) for p in outputs}) < len(outputs):
        reason = f"two of its outputs are the same file {item.output}; use separate folders"
        failures.append(_failed(item.photo, item.mask, item.output, reason))
        return
    for out in outputs:
        try:
            output_format(out)
        except EdgefillError as exc:
            failures.append(_failed(item.photo, item.mask, item.output, str(exc)))
            return
        if _same(out, item.photo) or _same(out, item.mask):
            reason = f"output {out} is the photo or its mask; it would overwrite an input"
            failures.append(_failed(item.photo, item.mask, item.output, reason))
            return
        key = _key(out)
        if key in claimed:
            reason = f"another photo ({_name(claimed[key])}) also writes {out}"
            failures.append(_failed(item.photo, item.mask, item.output, reason))
            return
    for out in outputs:
        claimed[_key(out)] = item.photo
    items.append(item)


def plan_folder(
    photo_dir: str,
    mask_dir: str | None,
    out_dir: str | None,
    task: str,
    side_by_side: str | None = None,
    mask_out: str | None = None,
    failures_csv: str | None = None,
    report: str | None = None,
    mask_beside: bool = False,
) -> Plan:
    """Every photo in ``photo_dir`` (by name) with the mask of the same stem in ``mask_dir``,
    or with ``mask_dir`` itself when it is one mask file: the same spot in every photo (dust on
    a camera's sensor, a watermark, a scanner's flaw).

    Outputs are ``out_dir/STEM.png`` (default: the photo folder's name + ``_inpainted`` or
    ``_restored``). ``inpaint`` needs masks; ``restore`` detects damage without them.
    """
    photo_dir = str(photo_dir)
    if out_dir is None:
        out_dir = _beside_folder(photo_dir, "_inpainted" if task == "inpaint" else "_restored")
    out_dir = str(out_dir)
    if mask_dir is None and task == "inpaint":
        raise EdgefillError(
            "a photo folder needs --mask MASK_DIR (masks with the same file names) or --mask "
            "FILE (one mask for every photo)"
        )
    shared = mask_dir is not None and not _isdir(str(mask_dir))
    if shared and not _exists(str(mask_dir)):
        raise EdgefillError(
            f"{mask_dir}: not found; --mask is a folder of masks named as the photos, or one "
            "mask for every photo"
        )
    for name, folder in (("photo", photo_dir), ("mask", None if shared else mask_dir)):
        for target in (out_dir, side_by_side, mask_out, report):
            if _same(target, folder):
                raise EdgefillError(
                    f"{target}: an output folder is the {name} folder; choose another so the "
                    "originals are not overwritten"
                )
    photos = _images(photo_dir)
    if not photos:
        raise EdgefillError(f"{photo_dir}: no photos found")
    masks = {_stem(p): p for p in _images(str(mask_dir))} if mask_dir and not shared else {}
    items: list[Item] = []
    failures: list[ItemResult] = []
    claimed: dict[str, str] = {}
    for photo in photos:
        output = _join(out_dir, _stem(photo) + ".png")
        mask = str(mask_dir) if shared else masks.get(_stem(photo))
        if mask_dir is not None and mask is None:
            reason = f"no mask with the same name in {mask_dir}"
            failures.append(_failed(photo, None, output, reason))
            continue
        item = _item(photo, mask, output, side_by_side, mask_out, report, mask_beside)
        _add(items, failures, claimed, item)
    plan = Plan(items, failures, failures_csv or _join(out_dir, "failures.csv"), out_dir)
    plan.others = _not_images(photo_dir)
    return plan


def read_manifest(path: str) -> list[dict[str, str]]:
    """The rows of a manifest CSV (header: photo[, mask][, output]; other columns ignored)."""
    try:
        fs, p = _fs(path)
        with fs.open(p, "rb") as fh:
            text = fh.read().decode("utf-8-sig")
    except FileNotFoundError:
        raise EdgefillError(f"{path}: manifest not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgefillError(f"{path}: cannot read the manifest ({exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in reader.fieldnames or []]
    if "photo" not in columns:
        raise EdgefillError(
            f"{path}: a manifest needs a header with a 'photo' column (and 'mask', 'output'), "
            f"got {columns or 'no header'}"
        )
    reader.fieldnames = columns
    return [{k: (v or "").strip() for k, v in row.items() if k} for row in reader]


def plan_manifest(
    manifest: str,
    out_dir: str | None,
    task: str,
    side_by_side: str | None = None,
    mask_out: str | None = None,
    failures_csv: str | None = None,
    report: str | None = None,
    mask_beside: bool = False,
) -> Plan:
    """One item per manifest row. Relative photo and mask paths are relative to the manifest's
    folder; relative outputs to ``out_dir`` (else the manifest's folder); an empty output is
    ``out_dir/STEM.png``. An empty mask: ``restore`` detects damage, ``inpaint`` uses the photo's
    transparency."""
    manifest = str(manifest)
    rows = read_manifest(manifest)
    if not rows:
        raise EdgefillError(f"{manifest}: no photos listed")
    base = _parent(manifest)
    out_base = str(out_dir) if out_dir is not None else base
    items: list[Item] = []
    failures: list[ItemResult] = []
    claimed: dict[str, str] = {}
    for n, row in enumerate(rows, start=2):  # line 1 is the header
        if not row.get("photo"):
            failures.append(_failed("", None, "", f"{manifest} line {n}: no photo path"))
            continue
        photo = _resolve(row["photo"], base)
        mask = _resolve(row["mask"], base) if row.get("mask") else None
        if row.get("output"):
            output = _resolve(row["output"], out_base)
        elif out_dir is not None:
            output = _join(str(out_dir), _stem(photo) + ".png")
        else:
            reason = f"{manifest} line {n}: no output path (add an output column or give -o DIR)"
            failures.append(_failed(photo, mask, "", reason))
            continue
        item = _item(photo, mask, output, side_by_side, mask_out, report, mask_beside)
        _add(items, failures, claimed, item)
    default_csv = (
        _join(str(out_dir), "failures.csv") if out_dir else manifest[:-4] + "_failures.csv"
    )
    return Plan(items, failures, failures_csv or default_csv, str(out_dir) if out_dir else None)


def plan_batch(
    src: str | Path,
    masks: str | Path | None,
    out: str | Path | None,
    task: str,
    side_by_side: str | None = None,
    mask_out: str | None = None,
    failures_csv: str | None = None,
    keep_existing: bool = True,
    report: str | None = None,
    mask_beside: bool = False,
) -> Plan:
    """A folder or a manifest CSV as a list of items (see ``plan_folder``, ``plan_manifest``).

    ``report``: a folder for review sheets (``STEM.jpg``); ``mask_beside``: without ``mask_out``,
    each restored photo's mask goes to ``masks/STEM.png`` next to it.

    ``keep_existing=False`` (the CLI without --overwrite or --skip-existing): results that
    already exist are refused before any model loads, so a run never replaces them silently."""
    src = str(src)
    out = None if out is None else str(out)
    if src.lower().endswith(".csv"):
        if masks is not None:
            raise EdgefillError("a manifest lists the masks itself (mask column); drop --mask")
        plan = plan_manifest(
            src, out, task, side_by_side, mask_out, failures_csv, report, mask_beside
        )
    elif not _isdir(src):
        raise EdgefillError(f"{src}: not a folder of photos or a manifest .csv")
    else:
        plan = plan_folder(
            src,
            None if masks is None else str(masks),
            out,
            task,
            side_by_side,
            mask_out,
            failures_csv,
            report,
            mask_beside,
        )
    if not keep_existing:
        check_no_existing(plan)
    return plan


def check_no_existing(plan: Plan) -> None:
    """Existing results need --overwrite (replace) or --skip-existing (keep): never silently."""
    existing = sorted(_existing({item.output for item in plan.items}))
    if existing:
        raise EdgefillError(
            f"{plan.out_dir or _parent(existing[0])}: {len(existing)} of the results already "
            f"exist (e.g. {_name(existing[0])}); pass --skip-existing to keep them or "
            "--overwrite to replace them"
        )


# ----------------------------------------------------------------------------- one photo


def _outputs(
    job: Job, model: Any, item: Item
) -> tuple[list[tuple[str, Callable[[str], Any]]], float]:
    """Run the model on one photo: the files to write, the main output last (it marks done),
    and the share of the photo a given mask made the hole (``ItemResult.hole_share``, else 0)."""
    from edgefill.pipeline import InpaintResult
    from edgefill.refine import refine
    from edgefill.restore import restore

    with _readable(item.photo) as photo, _readable(item.mask) as mask:
        assert photo is not None
        if job.task == "restore":
            r = restore(
                photo,
                mask,
                model,
                kind=job.kind,
                sensitivity=job.sensitivity,
                method=job.method,
                detector=job.detector,
                repair=job.repair,
                confident_at=job.confident_at,
                refine_result=job.refine,
                resize_mask=job.resize_mask,
                mask_threshold=job.mask_threshold,
                max_pixels=job.max_pixels,
                grow_mask=job.grow_mask,
            )
            files: list[tuple[str, Callable[[str], Any]]] = []
            if item.side_by_side:
                files.append((item.side_by_side, r.save_side_by_side))
            if item.mask_out:
                files.append((item.mask_out, r.save_mask))
            if item.report:
                files.append((item.report, r.save_report))
            return [*files, (item.output, lambda p: r.save(p, job.quality))], 0.0
        # The one photo+mask path (masks.prepare_inputs): 16-bit samples and metadata are kept.
        source, hole, keep_alpha = model.prepare_photo(
            photo, mask, job.resize_mask, job.mask_threshold, job.max_pixels, job.grow_mask
        )
    image, edges = model.inpaint_arrays(source.rgb, hole)
    if job.refine:
        image = refine(image, hole, edges)
    alpha = source.alpha if keep_alpha else None
    res = InpaintResult(image, edges, hole, alpha, source.deep, source.meta)
    share = float(hole.mean()) if item.mask else 0.0
    return [(item.output, lambda p: res.save(p, job.quality))], share


def process_item(job: Job, model: Any, item: Item) -> ItemResult:
    """The one function both engines run per photo: skip if done, load, run, write atomically.

    Never raises for a bad photo: the error becomes a ``failed`` result with the reason.
    """
    start = time.perf_counter()

    def result(status: str, reason: str = "", share: float = 0.0) -> ItemResult:
        seconds = time.perf_counter() - start
        return ItemResult(item.photo, item.mask, item.output, status, reason, seconds, share)

    try:
        if job.skip_existing and _exists(item.output):
            return result("skipped")
        files, share = _outputs(job, model, item)
        for path, save in files:
            _write(path, save)
        return result("done", share=share)
    except EdgefillError as exc:
        return result("failed", str(exc))
    except Exception as exc:  # an unexpected error in one photo must not stop 100 000 others
        return result("failed", f"{type(exc).__name__}: {exc}")


# ----------------------------------------------------------------------------- engines


def run_local(job: Job, items: list[Item]) -> Iterator[ItemResult]:
    """One model in this process, the photos one after another."""
    model = job.load_model()
    for item in items:
        yield process_item(job, model, item)


class RayWorker:
    """A Ray Data actor: loads the model once, then runs ``process_item`` on each row."""

    def __init__(self, job: Job):
        self.job = job
        self.model = job.load_model()

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {k: [] for k in ("photo", "mask", "output", "status")}
        out.update(reason=[], seconds=[], hole_share=[])
        for i in range(len(batch["photo"])):
            item = Item(**{k: (str(batch[k][i]) or None) for k in _ITEM_FIELDS})
            r = process_item(self.job, self.model, item)
            for k, v in asdict(r).items():
                out[k].append("" if v is None else v)
        return out


_ITEM_FIELDS = ("photo", "mask", "output", "side_by_side", "mask_out", "report")


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise EdgefillError(
            f"--engine ray needs Ray: {install_hint('cluster')} (see docs/scale.md)"
        ) from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """Connect to the cluster at ``address`` (or start Ray here); shut down only what we started.

    An already initialised Ray (``ray.init`` by the caller) is used as it is.
    """
    ray = _import_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        ray.init(
            address=address,
            logging_level=logging.ERROR,
            include_dashboard=False,
            log_to_driver=False,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise EdgefillError(f"could not start or reach {where}: {exc}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _pool_size(ray: Any, workers: int | None, cpus: float, gpus: float) -> int:
    if workers is not None:
        if workers < 1:
            raise EdgefillError(f"--workers must be at least 1, got {workers}")
        return workers
    res = ray.cluster_resources()
    if gpus > 0:
        if res.get("GPU", 0) < gpus:
            raise EdgefillError("--device cuda but the Ray cluster has no GPU workers")
        return max(1, int(res["GPU"] // gpus))
    return max(1, int(res.get("CPU", 1) // cpus))


def run_ray(
    job: Job,
    items: list[Item],
    workers: int | None = None,
    cpus_per_worker: float = 1,
    gpus_per_worker: float | None = None,
    address: str | None = None,
) -> Iterator[ItemResult]:
    """``map_batches`` over an actor pool, one model per actor (``RayWorker``), in any order.

    Ray restarts a killed actor and retries its batch; photos of that batch that were already
    written are skipped (``skip_existing`` is forced on). Items still without a result after
    the run (retries exhausted) are resubmitted, up to ``MAX_RAY_ROUNDS`` runs in all.
    """
    if cpus_per_worker <= 0:
        raise EdgefillError(f"--cpus-per-worker must be positive, got {cpus_per_worker}")
    gpus = (
        (1.0 if job.device.startswith("cuda") else 0.0)
        if gpus_per_worker is None
        else gpus_per_worker
    )
    job = replace(
        job,
        skip_existing=True,
        threads=job.threads or (max(1, int(cpus_per_worker)) if gpus == 0 else None),
    )
    with ray_session(address) as ray:
        from ray.data import ActorPoolStrategy, DataContext

        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False  # ours is the one progress bar
        ctx.print_on_execution_start = False
        ctx.enable_auto_log_stats = False
        ctx.max_errored_blocks = -1  # a batch lost for good must not stop the others
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        size = _pool_size(ray, workers, cpus_per_worker, gpus)
        pending = {item.output: item for item in items}
        error: Exception | None = None
        for round_ in range(MAX_RAY_ROUNDS):
            if not pending:
                break
            rows = [{k: getattr(i, k) or "" for k in _ITEM_FIELDS} for i in pending.values()]
            # After the first run each photo is its own block: a photo that kills its worker
            # every time (out of memory, say) then takes no other photo down with it.
            blocks = None if round_ == 0 else len(rows)
            with warnings.catch_warnings():
                # Ray 2.60 has no named parameter for a bounded retry count yet and warns that
                # the remote-args route goes in 2.64 (the extra pins ray below that).
                warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated")
                ds = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
                    RayWorker,
                    fn_constructor_kwargs={"job": job},
                    batch_size=1,
                    compute=ActorPoolStrategy(size=size),
                    num_cpus=cpus_per_worker,
                    num_gpus=gpus or None,
                    max_restarts=-1,  # a dead worker is replaced, always
                    max_task_retries=RAY_TASK_RETRIES,  # its batch retried, but not forever
                )
            got = 0
            try:
                for row in ds.iter_rows():
                    # Items reach here only when their output did not exist before the run
                    # (run_batch skips those first), so a worker's "skipped" means a worker
                    # killed after writing it: this run made it.
                    status = "done" if row["status"] == "skipped" else str(row["status"])
                    r = ItemResult(
                        str(row["photo"]),
                        str(row["mask"]) or None,
                        str(row["output"]),
                        status,
                        str(row["reason"]),
                        float(row["seconds"]),
                        float(row["hole_share"]),
                    )
                    if pending.pop(r.output, None) is not None:
                        got += 1
                        yield r
            except Exception as exc:  # a lost actor beyond Ray's retries, an unplaceable pool
                if got == 0:  # nothing ran at all: a setup problem, not a flaky worker
                    raise EdgefillError(f"the Ray job failed: {_last_line(exc)}") from None
                error = exc
        for item in pending.values():
            reason = (
                f"no result after {MAX_RAY_ROUNDS} runs: the worker processing it died each "
                f"time (out of memory? a crash?){': ' + _last_line(error) if error else ''}"
            )
            yield ItemResult(item.photo, item.mask, item.output, "failed", reason)


def _last_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


# ----------------------------------------------------------------------------- a whole job


def write_failures(path: str, failures: list[ItemResult]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(FAILURE_COLUMNS)
    for f in failures:
        writer.writerow([f.photo, f.mask or "", f.output, f.reason])
    data = buf.getvalue().encode()

    def save(local: str) -> None:
        os.makedirs(os.path.dirname(local) or ".", exist_ok=True)
        tmp = f"{local}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, local)

    try:
        _write(path, save)
    except OSError as exc:
        raise EdgefillError(f"{path}: could not write the failures list ({exc})") from None


def _progress(results: Iterable[ItemResult], total: int, show: bool) -> Iterator[ItemResult]:
    from tqdm import tqdm

    bar = tqdm(total=total, desc="photos", unit="img", disable=not show, file=sys.stderr)
    counts = dict.fromkeys(STATUSES, 0)
    try:
        for r in results:
            counts[r.status] += 1
            bar.set_postfix(counts, refresh=False)
            bar.update(1)
            yield r
    finally:
        bar.close()


def run_batch(
    job: Job,
    plan: Plan,
    engine: str = "local",
    *,
    progress: bool = True,
    **ray_options: Any,
) -> Summary:
    """Run a planned job with ``engine`` (local | ray), write the failures CSV, summarise.

    ``ray_options``: ``workers``, ``cpus_per_worker``, ``gpus_per_worker``, ``address``.
    With the ray engine, outputs that exist are always skipped (a rerun resumes).
    """
    if engine not in ENGINES:
        raise EdgefillError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    start = time.perf_counter()
    skip = job.skip_existing or engine == "ray"
    results: list[ItemResult] = list(plan.failures)
    todo = plan.items
    if skip:  # done outputs are skipped here, before any model or worker starts
        done = _existing({item.output for item in plan.items})
        results += [
            ItemResult(i.photo, i.mask, i.output, "skipped") for i in todo if i.output in done
        ]
        todo = [i for i in todo if i.output not in done]
    first: float | None = None
    if todo:
        from edgefill.pipeline import resolve_weights

        resolve_weights(job.weights)  # a missing model is one error, not N failures
        if engine == "local":
            stream = run_local(job, todo)
        else:
            stream = run_ray(job, todo, **ray_options)
        try:
            for r in _progress(stream, len(todo), progress):
                first = first if first is not None else time.perf_counter() - start
                results.append(r)
        finally:
            _sweep_temps(todo)
    seconds = time.perf_counter() - start
    failures = [r for r in results if r.status == "failed"]
    csv_path: str | None = plan.failures_csv
    if failures or _exists(plan.failures_csv):  # never leave a stale list from an earlier run
        write_failures(plan.failures_csv, failures)
    else:
        csv_path = None
    count = {s: sum(r.status == s for r in results) for s in STATUSES}
    inverted = [r.mask or "" for r in results if r.hole_share > INVERTED_MASK_SHARE]
    return Summary(
        plan.total,
        count["done"],
        count["skipped"],
        count["failed"],
        seconds,
        first if first is not None else seconds,
        failures,
        csv_path,
        inverted,
    )


def _sweep_temps(items: list[Item]) -> None:
    """Remove the temp files that dead workers left beside this job's local outputs.

    A write removes its own path's stale temps, but a photo whose worker was killed and that
    then failed for good (or was written by a retry on another node) would keep one."""
    by_folder: dict[Path, set[str]] = {}
    for item in items:
        for out in (item.output, item.side_by_side, item.mask_out, item.report):
            local = _local_path(out) if out else None
            if local is not None:
                by_folder.setdefault(Path(local).parent, set()).add(Path(local).name)
    for folder, names in by_folder.items():
        remove_stale_temps_in(folder, names)


def _existing(outputs: set[str]) -> set[str]:
    """The outputs that exist, listing each output folder once (cheap on object stores)."""
    found: set[str] = set()
    by_folder: dict[str, set[str]] = {}
    for out in outputs:
        by_folder.setdefault(_parent(out), set()).add(out)
    for folder, outs in by_folder.items():
        if not _isdir(folder):
            continue
        names = {_name(p) for p in _list_files(folder)}
        found |= {o for o in outs if _name(o) in names}
    return found


def summary_line(summary: Summary, out_dir: str | None) -> str:
    where = f" to {out_dir}" if out_dir else ""
    return (
        f"wrote {summary.done} of {summary.total} photos{where} "
        f"({summary.skipped} skipped, {summary.failed} failed) in {summary.seconds:.1f} s: "
        f"{summary.throughput:.2f} photos/s, first result after {summary.startup_seconds:.1f} s"
    )
