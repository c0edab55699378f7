"""Peak memory of folder mode and of the server under concurrent large uploads (issue 18).

    nice -n 19 .venv/bin/python benchmarks/bench_memory.py folder --counts 30,300,2000
    nice -n 19 .venv/bin/python benchmarks/bench_memory.py server --clients 8 --megapixels 12

``folder``: ``edgefill inpaint PHOTO_DIR --mask MASK_DIR`` in a child process on N photos (hard
links to a few distinct JPEGs, so 2000 photos cost no disk), tiny random weights (the model is not
what is measured); reports the child's peak RSS (``ru_maxrss``) and wall time per N. Flat peak RSS
over N means the folder is streamed, not decoded up front.

``server``: ``edgefill serve`` in a child process with the shipped model; ``--clients`` threads
each POST one large photo + mask to /api/inpaint at the same moment, retrying after
``Retry-After`` when the server answers 503. Reports the server's peak RSS (VmHWM), its RSS once
all answers are in (after 3 s idle), how many 503s were sent and the wall time.

``--src DIR`` runs another checkout's ``src`` (e.g. the code before issue 18) for comparison.
Results: docs/reliability.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def synthetic_photo(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth gradients plus mild noise: compresses like a photo, not like random bytes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:h, :w].astype(np.float32)
    img = np.stack([x / w, y / h, 0.5 + 0.5 * np.sin((x + y) / 37.0)], -1) * 200 + 25
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def box_mask(h: int, w: int, seed: int, fraction: float = 0.02) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = np.zeros((h, w), np.uint8)
    bh, bw = int(h * fraction**0.5), int(w * fraction**0.5)
    t, lf = int(rng.integers(0, h - bh)), int(rng.integers(0, w - bw))
    m[t : t + bh, lf : lf + bw] = 255
    return m


def child_env(src: Path | None) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return env


# ----------------------------------------------------------------------------- folder mode


# Written by the code under test (``--src``), whose release format may differ from today's.
TINY_RELEASE = """
import sys, torch
from edgefill.checkpoint import save_release
from edgefill.config import ModelConfig
from edgefill.networks import EdgeGenerator, InpaintGenerator
torch.manual_seed(0)
g1, g2 = EdgeGenerator(4, 1), InpaintGenerator(4, 1)
cfg = ModelConfig(width=4, edge_blocks=1, inpaint_blocks=1)
save_release(sys.argv[1], g1.state_dict(), g2.state_dict(), cfg)
"""


def tiny_release(folder: Path, src: Path | None) -> Path:
    cmd = [sys.executable, "-c", TINY_RELEASE, str(folder)]
    subprocess.run(cmd, env=child_env(src), check=True, stdout=subprocess.DEVNULL)
    return folder


def part_folder(args: argparse.Namespace) -> list[dict]:
    tmp = Path(tempfile.mkdtemp(prefix="edgefill-mem-"))
    rows = []
    try:
        rel = tiny_release(tmp / "rel", args.src)
        h, w = args.height, args.width
        distinct = tmp / "distinct"
        distinct.mkdir()
        for i in range(args.distinct):
            Image.fromarray(synthetic_photo(h, w, i)).save(distinct / f"{i}.jpg", quality=90)
            Image.fromarray(box_mask(h, w, i)).save(distinct / f"{i}.png")
        for n in args.counts:
            photos, masks = tmp / f"photos{n}", tmp / f"masks{n}"
            photos.mkdir()
            masks.mkdir()
            for j in range(n):
                k = j % args.distinct
                os.link(distinct / f"{k}.jpg", photos / f"{j:05d}.jpg")
                os.link(distinct / f"{k}.png", masks / f"{j:05d}.png")
            out = tmp / f"out{n}"
            cmd = [sys.executable, "-m", "edgefill.cli", "inpaint", str(photos), "--mask",
                   str(masks), "-o", str(out), "--weights", str(rel)]  # fmt: skip
            t = time.perf_counter()
            proc = subprocess.Popen(
                cmd, env=child_env(args.src), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t
            assert status == 0, f"edgefill exited with status {status}"
            written = len(list(out.glob("*.png")))
            row = {
                "photos": n,
                "size": f"{w}x{h}",
                "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
                "wall_s": round(wall, 1),
                "written": written,
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(photos)
            shutil.rmtree(masks)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


# ----------------------------------------------------------------------------- server


def multipart(fields: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b""
    for name, (filename, data) in fields.items():
        body += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def part_server(args: argparse.Namespace) -> dict:
    side = int((args.megapixels * 1e6) ** 0.5)
    h, w = int(side * 0.75), int(side * 4 / 3)  # 4:3, about --megapixels
    buf = io.BytesIO()
    Image.fromarray(synthetic_photo(h, w, 0)).save(buf, format="JPEG", quality=90)
    photo = buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray(box_mask(h, w, 0)).save(buf, format="PNG")
    body, ctype = multipart({"photo": ("p.jpg", photo), "mask": ("m.png", buf.getvalue())})
    port = free_port()
    cmd = [sys.executable, "-m", "edgefill.cli", "serve", "--port", str(port),
           "--max-upload-mb", "256", "--max-pixels", str(int(args.megapixels * 1e6 * 1.1))]  # fmt: skip
    server = subprocess.Popen(
        cmd, env=child_env(args.src), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/api/health", timeout=2).read()
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        idle_rss = rss_mb(server.pid)
        busy_answers = []
        statuses = []
        peak = [idle_rss]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak.append(rss_mb(server.pid))
                time.sleep(0.05)

        def client() -> None:
            while True:
                req = urllib.request.Request(
                    url + "/api/inpaint", data=body, headers={"Content-Type": ctype}
                )
                try:
                    with urllib.request.urlopen(req, timeout=600) as r:
                        r.read()
                        statuses.append(r.status)
                        return
                except urllib.error.HTTPError as e:
                    if e.code != 503:
                        statuses.append(e.code)
                        return
                    busy_answers.append(1)
                    time.sleep(float(e.headers.get("Retry-After", "1")))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t
        time.sleep(3)
        after = rss_mb(server.pid)
        stop.set()
        sampler.join()
        result = {
            "clients": args.clients,
            "photo": f"{w}x{h} ({w * h / 1e6:.1f} MP JPEG, {len(photo) / 1e6:.1f} MB)",
            "statuses": sorted(set(statuses)),
            "ok": statuses.count(200),
            "answers_503": len(busy_answers),
            "idle_rss_mb": round(idle_rss),
            "peak_rss_mb": round(max(rss_mb(server.pid, "VmHWM"), max(peak))),
            "rss_after_mb": round(after),
            "wall_s": round(wall, 1),
        }
        print(json.dumps(result), flush=True)
        return result
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="part", required=True)
    f = sub.add_parser("folder")
    f.add_argument("--counts", default="30,300,2000")
    f.add_argument("--width", type=int, default=1000)
    f.add_argument("--height", type=int, default=1000)
    f.add_argument("--distinct", type=int, default=10)
    f.add_argument("--src", type=Path, help="another checkout's src folder (default: this one)")
    s = sub.add_parser("server")
    s.add_argument("--clients", type=int, default=8)
    s.add_argument("--megapixels", type=float, default=12)
    s.add_argument("--src", type=Path, help="another checkout's src folder (default: this one)")
    args = p.parse_args()
    if args.part == "folder":
        args.counts = [int(c) for c in args.counts.split(",")]
        part_folder(args)
    else:
        part_server(args)


if __name__ == "__main__":
    main()
