"""A release's second G2 for drawn edges (``attach_drawn``, ``inpaint_drawn.safetensors``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, box_hole, photo_array, tiny_generators

from edgefill.checkpoint import (
    DRAWN_FILE,
    attach_drawn,
    average_releases,
    load_drawn_generator,
    save_release,
)
from edgefill.cli import main
from edgefill.config import ModelConfig
from edgefill.errors import EdgefillError
from edgefill.networks import EdgeGenerator, InpaintGenerator
from edgefill.pipeline import Inpainter


def _release(folder: Path, seed: int, cfg: ModelConfig = TINY_CONFIG) -> Path:
    torch.manual_seed(seed)
    g1 = EdgeGenerator(cfg.width, cfg.edge_blocks)
    g2 = InpaintGenerator.from_config(cfg)
    return save_release(folder, g1.state_dict(), g2.state_dict(), cfg)


def _line(hole: np.ndarray) -> np.ndarray:
    line = np.zeros(hole.shape, np.float32)
    line[hole.shape[0] // 2] = 1
    return line


@pytest.fixture
def releases(tmp_path: Path) -> tuple[Path, Path]:
    """(a release given the G2 of a second one for drawn edges, that second release)."""
    base, drawn = _release(tmp_path / "base", 0), _release(tmp_path / "drawn", 1)
    attach_drawn(base, drawn)
    return base, drawn


def test_attach_drawn_writes_the_source_g2_and_says_where_from(
    releases: tuple[Path, Path],
) -> None:
    base, drawn = releases
    doc = json.loads((base / "config.json").read_text())
    assert doc["drawn_from"] == str(drawn) and doc["dtype"] == "float16"
    got = load_drawn_generator(base, TINY_CONFIG).state_dict()
    want = Inpainter.from_pretrained(drawn, precision="fp32").g2.state_dict()
    for k, v in want.items():
        torch.testing.assert_close(got[k], v)
    assert load_drawn_generator(drawn, TINY_CONFIG) is None


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_the_drawn_g2_fills_drawn_edges_and_the_own_g2_predicted_ones(
    releases: tuple[Path, Path], backend: str
) -> None:
    if backend == "onnx":
        pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    base, drawn = releases
    rgb, hole = photo_array(), box_hole()
    inp = Inpainter.from_pretrained(base, precision="fp32", backend=backend)
    own = Inpainter.from_pretrained(drawn, precision="fp32", backend=backend)
    plain = Inpainter.from_pretrained(base, precision="fp32", backend=backend)
    plain.g2_drawn = None  # the same release as if it had no G2 for drawn edges
    called: list[str] = []
    real = inp.engine

    def spy(which: str, x: torch.Tensor) -> torch.Tensor:
        called.append(which)
        return real(which, x)

    inp.engine = spy
    guided, _ = inp.inpaint_arrays(rgb, hole, _line(hole), hd_strategy="original")
    assert called == ["inpaint_drawn"] * 2  # and on the mirrored inputs (flip_average)
    np.testing.assert_array_equal(
        guided, own.inpaint_arrays(rgb, hole, _line(hole), hd_strategy="original")[0]
    )
    predicted, _ = inp.inpaint_arrays(rgb, hole, hd_strategy="original")
    assert called[2:] == ["edge", "inpaint"]
    np.testing.assert_array_equal(
        predicted, plain.inpaint_arrays(rgb, hole, hd_strategy="original")[0]
    )


def test_bf16_runs_the_drawn_g2_too(releases: tuple[Path, Path]) -> None:
    inp = Inpainter.from_pretrained(releases[0], precision="bf16")
    assert set(inp.engine.nets) == {"edge", "inpaint", "inpaint_drawn"}
    rgb, hole = photo_array(), box_hole()
    out, _ = inp.inpaint_arrays(rgb, hole, _line(hole))
    assert out.shape == rgb.shape and np.array_equal(out[~hole], rgb[~hole])


def test_export_onnx_writes_the_drawn_graph_and_drops_a_stale_one(
    releases: tuple[Path, Path], tmp_path: Path
) -> None:
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    from edgefill.onnx_export import export_onnx

    out = export_onnx(releases[0], tmp_path / "onnx")
    assert (out / DRAWN_FILE).is_file() and (out / "inpaint_drawn.onnx").is_file()
    inp = Inpainter.from_pretrained(out, backend="onnx")
    assert set(inp.engine.sessions) == {"edge", "inpaint", "inpaint_drawn"}
    export_onnx(releases[1], out)  # a release without one, into the same folder
    assert not (out / DRAWN_FILE).exists() and not (out / "inpaint_drawn.onnx").exists()


def test_saving_or_averaging_keeps_the_drawn_g2_consistent(
    releases: tuple[Path, Path], tmp_path: Path
) -> None:
    base, drawn = releases
    both = average_releases([base, base], tmp_path / "both", half=False)
    assert load_drawn_generator(both, TINY_CONFIG) is not None
    with pytest.raises(EdgefillError, match="some of these releases have a G2 for drawn edges"):
        average_releases([base, drawn], tmp_path / "mixed")
    g1, g2 = tiny_generators(0)
    save_release(base, g1.state_dict(), g2.state_dict(), TINY_CONFIG)  # rewritten without one
    assert not (base / DRAWN_FILE).exists()
    assert Inpainter.from_pretrained(base).g2_drawn is None


def test_attach_drawn_from_a_release_with_a_g2_for_drawn_edges_takes_that_one(
    releases: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """E.g. the shipped G2 for drawn edges put back into a release fine-tuned from it."""
    base, drawn = releases  # base's G2 for drawn edges is drawn's G2
    mine = _release(tmp_path / "mine", 5)
    assert main(["attach-drawn", str(mine), str(base)]) == 0
    assert f"with the G2 for drawn edges of {base}" in capsys.readouterr().out
    got = load_drawn_generator(mine, TINY_CONFIG).state_dict()
    for k, v in load_drawn_generator(base, TINY_CONFIG).state_dict().items():
        assert torch.equal(got[k], v), k
    doc = json.loads((mine / "config.json").read_text())
    assert doc["drawn_from"] == f"{base} (its G2 for drawn edges)"


def test_attach_drawn_keeps_the_release_copy_guide_whatever_the_sources(tmp_path: Path) -> None:
    """A run exports the guide weight it trained with; the release's inference weight stays."""
    base = _release(tmp_path / "base", 0, dataclasses.replace(TINY_CONFIG, edge_guide=0.3))
    trained = _release(tmp_path / "trained", 1, dataclasses.replace(TINY_CONFIG, edge_guide=1.0))
    attach_drawn(base, trained)
    assert json.loads((base / "config.json").read_text())["model"]["edge_guide"] == 0.3
    assert load_drawn_generator(base, TINY_CONFIG) is not None


def test_attach_drawn_errors(releases: tuple[Path, Path], tmp_path: Path) -> None:
    base, _ = releases
    wider = _release(tmp_path / "wider", 2, ModelConfig(width=8, edge_blocks=1, inpaint_blocks=1))
    with pytest.raises(EdgefillError, match="architecture differs.*same inputs"):
        attach_drawn(base, wider)
    with pytest.raises(EdgefillError, match="weights folder not found"):
        attach_drawn(tmp_path / "nothing", base)
    (base / DRAWN_FILE).write_bytes(b"not safetensors")
    with pytest.raises(EdgefillError, match="not a readable safetensors file"):
        Inpainter.from_pretrained(base)


def test_cli_attach_drawn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, drawn = _release(tmp_path / "base", 0), _release(tmp_path / "drawn", 1)
    assert main(["attach-drawn", str(base), str(drawn)]) == 0
    assert f"with the G2 of {drawn}" in capsys.readouterr().out
    assert (base / DRAWN_FILE).is_file()
    assert main(["attach-drawn", str(base), str(base)]) == 2  # its own folder: refused
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "overwrite" in err[0]


def test_the_shipped_release_has_a_g2_of_its_own_for_drawn_edges() -> None:
    """Packaging guard: without the file the shipped model would silently fill drawn edges with
    its predicted-edge G2 (docs/model-card.md, session 32)."""
    inp = Inpainter.from_pretrained(precision="fp32")
    assert inp.g2_drawn is not None
    own, drawn = inp.g2.state_dict(), inp.g2_drawn.state_dict()
    assert any(not torch.equal(own[k], drawn[k]) for k in own)
