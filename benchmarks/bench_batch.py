"""Batch throughput: the local engine vs Ray with 1 and 2 workers, on the same photos.

    nice -n 19 .venv/bin/python benchmarks/bench_batch.py --photos 8 --json docs/scale_results.json

Each configuration runs in its own subprocess (clean memory numbers) on the same archive of
ImageNet sample photos with irregular 10-30 % masks, with the shipped model and default options:

- ``local-2t``: ``--engine local`` (one model, 2 torch threads: the default on a 2-core machine)
- ``local-1t``: ``--engine local --threads 1`` (the per-core cost)
- ``ray-1w``: ``--engine ray --workers 1 --cpus-per-worker 2`` (one actor, 2 threads)
- ``ray-2w``: ``--engine ray --workers 2 --cpus-per-worker 1`` (two actors, 1 thread each)

Reported per configuration: wall time, CPU seconds of its whole process tree, startup (start to the first photo written: model load,
and for Ray its start and actor creation), steady throughput ((n - 1) photos over the time from
the first to the last result), peak RSS of the process and of each Ray actor, and a hash of the
outputs, to show which configurations write byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "imagenet-samples"
CONFIGS: dict[str, dict[str, Any]] = {
    "local-2t": {"engine": "local", "threads": 2},
    "local-1t": {"engine": "local", "threads": 1},
    "ray-1w": {"engine": "ray", "workers": 1, "cpus_per_worker": 2},
    "ray-2w": {"engine": "ray", "workers": 2, "cpus_per_worker": 1},
}


def make_archive(root: Path, n: int) -> tuple[Path, Path]:
    """n ImageNet sample photos (as they are, ~500x375) with irregular 10-30 % masks."""
    from PIL import Image

    from edgefill.masks import irregular_mask

    photos, masks = root / "photos", root / "masks"
    photos.mkdir(parents=True)
    masks.mkdir()
    files = sorted(DATA.glob("*.JPEG"))[:n]
    if len(files) < n:
        raise SystemExit(f"need {n} photos in {DATA}, found {len(files)}")
    rng = np.random.default_rng(0)
    for f in files:
        (photos / f.name).write_bytes(f.read_bytes())
        w, h = Image.open(f).size
        hole = irregular_mask(h, w, rng, (0.1, 0.3))
        Image.fromarray(hole.astype(np.uint8) * 255).save(masks / (f.stem + ".png"))
    return photos, masks


def _rss_kb(pid: int, field: str = "VmRSS") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _actor_pids() -> list[int]:
    """Ray Data actor processes of this benchmark (title ray::MapWorker, under our process)."""
    me, out = os.getpid(), []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if not (d / "cmdline").read_bytes().startswith(b"ray::MapWorker"):
                continue
        except OSError:
            continue
        pid = int(d.name)
        while pid > 1:
            try:
                pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                break
            if pid == me:
                out.append(int(d.name))
                break
    return out


def run_config(name: str, photos: Path, masks: Path, out: Path) -> dict[str, Any]:
    """One configuration, in this process: timings per result, memory, output hash."""
    start = time.perf_counter()
    from edgefill.batch import Job, plan_batch, run_local, run_ray

    cfg = dict(CONFIGS[name])
    engine = cfg.pop("engine")
    threads = cfg.pop("threads", None)
    plan = plan_batch(photos, masks, out, "inpaint")
    job = Job(threads=threads)
    actor_peak: dict[int, int] = {}
    stop = threading.Event()

    def sample_actors() -> None:
        while not stop.wait(0.2):
            for pid in _actor_pids():
                actor_peak[pid] = max(actor_peak.get(pid, 0), _rss_kb(pid))

    sampler = threading.Thread(target=sample_actors, daemon=True)
    sampler.start()
    stamps = []
    stream = run_local(job, plan.items) if engine == "local" else run_ray(job, plan.items, **cfg)
    statuses = []
    for r in stream:
        stamps.append(time.perf_counter() - start)
        statuses.append(r.status)
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    digest = hashlib.sha256()
    for p in sorted(out.glob("*.png")):
        digest.update(p.name.encode() + p.read_bytes())
    n = len(stamps)
    return {
        "config": name,
        "engine": engine,
        **({"threads": threads} if threads else {}),
        **cfg,
        "photos": n,
        "done": statuses.count("done"),
        "wall_s": round(wall, 2),
        "startup_s": round(stamps[0], 2),
        "steady_photos_per_s": round((n - 1) / (stamps[-1] - stamps[0]), 3) if n > 1 else None,
        "overall_photos_per_s": round(n / wall, 3),
        "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "actor_peak_rss_mb": sorted(round(v / 1024) for v in actor_peak.values()),
        "outputs_sha256": digest.hexdigest()[:16],
    }


def _children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def table(doc: dict[str, Any]) -> str:
    """The markdown table of docs/scale.md from a results JSON."""
    rows = [
        "| configuration | photos/s (steady) | wall s | startup s | CPU s / photo "
        "| peak RSS MB: driver / each actor | load avg | outputs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    first: dict[str, str] = {}
    for r in doc["results"]:
        same = first.setdefault(r["outputs_sha256"], r["config"])
        actors = " / ".join(str(m) for m in r["actor_peak_rss_mb"]) or "-"
        rows.append(
            f"| {r['config']} | {r['steady_photos_per_s']} | {r['wall_s']} | {r['startup_s']} "
            f"| {r['cpu_s_per_photo']} | {r['process_peak_rss_mb']} / {actors} "
            f"| {r['load_avg_1min_before']}-{r['load_avg_1min_after']} "
            f"| {'= ' + same if same != r['config'] else r['outputs_sha256'][:8]} |"
        )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=40)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one config, print JSON
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--table", type=Path, help="print the markdown table of a results JSON")
    args = ap.parse_args()
    if args.table:
        print(table(json.loads(args.table.read_text())))
        return
    if args.one:
        root = args.root
        res = run_config(args.one, root / "photos", root / "masks", root / f"out-{args.one}")
        print("RESULT " + json.dumps(res), flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        root = Path(tmp)
        make_archive(root, args.photos)
        results = []
        for name in args.configs.split(","):
            load_before = os.getloadavg()[0]
            cpu_before = _children_cpu_s()
            proc = subprocess.run(
                [sys.executable, __file__, "--one", name, "--root", str(root)],
                capture_output=True,
                text=True,
                check=False,
            )
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                raise SystemExit(f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            res = json.loads(line[7:])
            # CPU seconds of the whole process tree (driver, Ray's raylet/GCS, actors): less
            # sensitive than wall time to what else the machine runs.
            cpu = _children_cpu_s() - cpu_before
            res["cpu_s_total"] = round(cpu, 1)
            res["cpu_s_per_photo"] = round(cpu / res["photos"], 2)
            res["load_avg_1min_before"] = round(load_before, 1)
            res["load_avg_1min_after"] = round(os.getloadavg()[0], 1)
            print(json.dumps(res), flush=True)
            results.append(res)
    doc = {
        "command": "nice -n 19 .venv/bin/python benchmarks/bench_batch.py "
        + " ".join(sys.argv[1:]),
        "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}",
        "photos": f"{args.photos} ImageNet sample photos (~500x375), irregular 10-30 % masks",
        "results": results,
    }
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
