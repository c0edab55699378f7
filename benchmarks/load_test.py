"""Bounded load test of the web server on loopback: N requests from C concurrent clients.

By default it writes small random weights to a temporary folder, starts ``edgefill serve`` on a
free 127.0.0.1 port (a subprocess, exactly as a user would), runs the load, stops the server and
prints: failures (must be 0), 5xx count, requests/s, p50/p95 latency, server RSS before/after.

    python benchmarks/load_test.py                          # 200 requests, 8 clients
    python benchmarks/load_test.py --requests 400 --concurrency 16 --size 512
    python benchmarks/load_test.py --url http://127.0.0.1:7860 --pid 1234   # a running server

Only loopback addresses are accepted. The mix is 70 % /api/inpaint, 25 % /api/edges and 5 %
deliberately bad uploads (which must get 400, never 5xx). Exit status 1 if anything failed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
from PIL import Image


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def payloads(size: int, count: int = 8, seed: int = 0) -> list[tuple[bytes, bytes]]:
    """Photo/mask PNG pairs: smooth colour fields with texture and a box or stroke hole."""
    rng = np.random.default_rng(seed)
    out = []
    y, x = np.mgrid[:size, :size].astype(np.float32) / size
    for _ in range(count):
        c = rng.uniform(0, 255, (3, 3))
        img = c[0] * x[..., None] + c[1] * y[..., None] + c[2] * (1 - x * y)[..., None]
        img = (img / 3 + rng.normal(0, 8, (size, size, 3))).clip(0, 255).astype(np.uint8)
        mask = np.zeros((size, size), np.uint8)
        h, w = rng.integers(size // 8, size // 3, 2)
        top, left = rng.integers(0, size - h), rng.integers(0, size - w)
        mask[top : top + h, left : left + w] = 255
        out.append((png(img), png(mask)))
    return out


def rss_mb(pid: int | None) -> dict[str, float | None]:
    """Resident and peak resident memory of a process (Linux /proc), in MiB."""
    result: dict[str, float | None] = {"rss_mb": None, "peak_rss_mb": None}
    if pid is None:
        return result
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                result["rss_mb"] = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                result["peak_rss_mb"] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_weights(folder: Path, width: int, blocks: int) -> Path:
    import torch

    from edgefill.checkpoint import save_release
    from edgefill.config import ModelConfig
    from edgefill.networks import EdgeGenerator, InpaintGenerator

    torch.manual_seed(0)
    g1, g2 = EdgeGenerator(width, blocks), InpaintGenerator(width, blocks)
    cfg = ModelConfig(width=width, edge_blocks=blocks, inpaint_blocks=blocks)
    return save_release(folder, g1.state_dict(), g2.state_dict(), cfg, {"name": "random-small"})


def start_server(weights: Path, port: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "edgefill.cli", "serve", "--weights", str(weights)]
    cmd += ["--port", str(port)]
    fh = open(log, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited early:\n{log.read_text()}")
        try:
            if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("the server did not start within 120 s")


def run_load(url: str, n: int, concurrency: int, size: int, bad_fraction: float) -> dict:
    pairs = payloads(size)
    rng = np.random.default_rng(1)
    kinds = rng.choice(["inpaint", "edges", "bad"], n, p=[0.75 - bad_fraction, 0.25, bad_fraction])
    lock = threading.Lock()
    next_index = [0]
    records: list[tuple[str, int | None, float, str]] = []

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=300) as client:
            while True:
                with lock:
                    i = next_index[0]
                    if i >= n:
                        return
                    next_index[0] += 1
                kind = kinds[i]
                photo, mask = pairs[i % len(pairs)]
                if kind == "bad":
                    photo = b"this is not an image"
                route = "/api/edges" if kind == "edges" else "/api/inpaint"
                files = {"photo": ("p.png", photo, "image/png"), "mask": ("m.png", mask)}
                t0 = time.perf_counter()
                try:
                    r = client.post(route, files=files)
                    status, err = r.status_code, ""
                    if status == 200 and r.headers.get("content-type") != "image/png":
                        err = "200 without a PNG"
                except httpx.HTTPError as exc:
                    status, err = None, f"{type(exc).__name__}: {exc}"
                with lock:
                    records.append((kind, status, time.perf_counter() - t0, err))

    t_start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for f in [pool.submit(worker) for _ in range(concurrency)]:
            f.result()
    wall = time.perf_counter() - t_start

    failures = []
    for kind, status, _, err in records:
        expected = 400 if kind == "bad" else 200
        if status != expected or err:
            failures.append(f"{kind}: status {status} {err}".strip())
    lat = sorted(r[2] for r in records if r[0] != "bad")
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [lat[0]] * 99
    return {
        "requests": len(records),
        "concurrency": concurrency,
        "image_size": size,
        "failures": len(failures),
        "failure_examples": failures[:5],
        "status_5xx": sum(1 for r in records if r[1] is not None and r[1] >= 500),
        "bad_requests_answered_400": sum(1 for r in records if r[0] == "bad" and r[1] == 400),
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(records) / wall, 2),
        "p50_ms": round(q[49] * 1000, 1),
        "p95_ms": round(q[94] * 1000, 1),
        "max_ms": round(lat[-1] * 1000, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--size", type=int, default=256, help="photo side in pixels (default 256)")
    ap.add_argument("--width", type=int, default=16, help="random model width (default 16)")
    ap.add_argument("--blocks", type=int, default=2, help="residual blocks (default 2)")
    ap.add_argument("--bad-fraction", type=float, default=0.05)
    ap.add_argument("--url", help="use a running server (loopback only) instead of starting one")
    ap.add_argument("--pid", type=int, help="with --url: the server's pid, for its memory")
    ap.add_argument("--json", help="also write the numbers to this file")
    args = ap.parse_args()
    if not 0 <= args.bad_fraction <= 0.5 or args.requests < 1 or args.concurrency < 1:
        ap.error("need 0 <= --bad-fraction <= 0.5, --requests >= 1, --concurrency >= 1")

    proc = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.url:
            host = urlsplit(args.url).hostname or ""
            if host not in ("127.0.0.1", "localhost", "::1"):
                ap.error(f"--url must point at a loopback address, not {host!r}")
            url, pid = args.url.rstrip("/"), args.pid
        else:
            weights = write_weights(Path(tmp) / "weights", args.width, args.blocks)
            port = free_port()
            proc = start_server(weights, port, Path(tmp) / "server.log")
            url, pid = f"http://127.0.0.1:{port}", proc.pid
        try:
            health = httpx.get(url + "/api/health", timeout=10).json()
            # One warm-up request so "before" includes the model's first-call allocations.
            photo, mask = payloads(args.size, 1)[0]
            httpx.post(
                url + "/api/inpaint", files={"photo": photo, "mask": mask}, timeout=300
            ).raise_for_status()
            before = rss_mb(pid)
            stats = run_load(url, args.requests, args.concurrency, args.size, args.bad_fraction)
            after = rss_mb(pid)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(30)
    stats.update(
        {
            "server_rss_before_mb": before["rss_mb"],
            "server_rss_after_mb": after["rss_mb"],
            "server_peak_rss_mb": after["peak_rss_mb"],
            "model": health.get("model"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}",
        }
    )

    def mb(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.0f} MiB"

    print(
        f"{stats['requests']} requests, {args.concurrency} clients, {args.size}x{args.size} px, "
        f"model width {args.width} x {args.blocks} blocks\n"
        f"  failures:        {stats['failures']}\n"
        f"  5xx responses:   {stats['status_5xx']}\n"
        f"  bad uploads:     {stats['bad_requests_answered_400']} answered 400\n"
        f"  throughput:      {stats['requests_per_s']} requests/s ({stats['wall_s']} s)\n"
        f"  latency:         p50 {stats['p50_ms']} ms, p95 {stats['p95_ms']} ms, "
        f"max {stats['max_ms']} ms\n"
        f"  server RSS:      {mb(stats['server_rss_before_mb'])} before, "
        f"{mb(stats['server_rss_after_mb'])} after, peak {mb(stats['server_peak_rss_mb'])}"
    )
    for line in stats["failure_examples"]:
        print(f"  failed: {line}")
    if args.json:
        Path(args.json).write_text(json.dumps(stats, indent=2) + "\n")
    return 1 if stats["failures"] or stats["status_5xx"] else 0


if __name__ == "__main__":
    sys.exit(main())
