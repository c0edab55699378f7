"""DistributedDataParallel on CPU: 2 gloo processes through the same entry point torchrun uses."""

from __future__ import annotations

import math
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from train_utils import make_photos, state_tensors, tiny_config

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, photos: str, outs: list[str], dump: str, nan_step: int) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    from torch.nn.parallel import DistributedDataParallel

    from edgefill import losses
    from edgefill.train import Trainer, run_training

    seen: list[Trainer] = []
    fit = Trainer.fit

    def spy(self: Trainer, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        seen.append(self)
        return fit(self, *args, **kwargs)

    Trainer.fit = spy  # type: ignore[method-assign]
    if nan_step:
        real_l1, calls = losses.masked_l1, [0]

        def flaky(*args: torch.Tensor) -> torch.Tensor:
            calls[0] += 1  # only this rank's loss goes bad: both ranks must still skip together
            bad = rank == 1 and calls[0] == nan_step
            return real_l1(*args) * (math.nan if bad else 1.0)

        losses.masked_l1 = flaky
    cfg = tiny_config("train.val_every=3", "train.save_every=3")
    run_training(cfg, "joint", photos, outs[rank], device="cpu", max_steps=3)
    t = seen[0]
    state = {name: p.state() for name, p in t.pairs.items()}
    wrapped = all(isinstance(p.g_run, DistributedDataParallel) for p in t.pairs.values())
    torch.save({"state": state, "ddp": wrapped, "step": t.step}, Path(dump) / f"rank{rank}.pt")


def _spawn(tmp: Path, photos: Path, nan_step: int = 0) -> tuple[list[Path], list[dict]]:
    outs = [tmp / f"out{r}" for r in range(WORLD)]
    args = (_free_port(), str(photos), [str(o) for o in outs], str(tmp), nan_step)
    ctx = mp.start_processes(_worker, args=args, nprocs=WORLD, join=False, start_method="spawn")
    deadline = time.monotonic() + 300
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("DDP workers did not finish in 300 s (deadlock?)")
    return outs, [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(autouse=True)
def no_vgg_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEFILL_CACHE", str(tmp_path / "cache"))  # inherited by the workers


def _assert_identical(results: list[dict]) -> None:
    a, b = (state_tensors(r["state"]) for r in results)
    assert a.keys() == b.keys()
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    assert not diff, f"ranks differ: {diff[:5]}"


def test_ddp_two_gloo_ranks_end_identical_and_only_rank0_writes(
    tmp_path: Path, photos: Path
) -> None:
    outs, results = _spawn(tmp_path, photos)
    assert all(r["ddp"] and r["step"] == 3 for r in results)
    _assert_identical(results)  # weights, spectral-norm vectors, EMA, Adam moments
    assert not outs[1].exists(), "rank 1 wrote files"
    assert (outs[0] / "checkpoints" / "step_00000003.pt").is_file()
    assert (outs[0] / "train_log.csv").is_file() and (outs[0] / "val_log.csv").is_file()


def test_ddp_nonfinite_on_one_rank_is_skipped_on_all(tmp_path: Path, photos: Path) -> None:
    outs, results = _spawn(tmp_path, photos, nan_step=2)
    assert all(r["step"] == 3 for r in results)
    _assert_identical(results)
    events = (outs[0] / "events.log").read_text()
    assert "step 2: non-finite" in events and "step skipped" in events
