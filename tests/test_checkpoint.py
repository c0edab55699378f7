"""Checkpoints (torch, weights_only) and releases (safetensors + config.json)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, tiny_generators

from edgefill.checkpoint import (
    CONFIG_FILE,
    EDGE_FILE,
    INPAINT_FILE,
    atomic_torch_save,
    attach_drawn,
    average_releases,
    load_checkpoint,
    load_release,
    read_release_config,
    save_release,
)
from edgefill.config import ModelConfig
from edgefill.errors import EdgefillError
from edgefill.networks import EdgeGenerator, InpaintGenerator
from edgefill.pipeline import Inpainter

# ----------------------------------------------------------------------------- training checkpoints


def test_checkpoint_round_trip_is_bit_exact(tmp_path: Path) -> None:
    g1, g2 = tiny_generators(1)
    opt = torch.optim.Adam(g2.parameters(), lr=1e-4, betas=(0.0, 0.9))
    g2(torch.rand(1, 4, 16, 16)).mean().backward()
    opt.step()
    state = {
        "stage": "inpaint",
        "step": 123,
        "config": {"model": {"width": 4}},
        "edge": g1.state_dict(),
        "inpaint": g2.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "numpy": np.random.default_rng(3).bit_generator.state,
        },
    }
    path = atomic_torch_save(state, tmp_path / "run" / "last.pt")
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left
    back = load_checkpoint(path)
    assert back["stage"] == "inpaint" and back["step"] == 123
    for key in ("edge", "inpaint"):
        assert back[key].keys() == state[key].keys()
        for name, value in state[key].items():
            assert torch.equal(back[key][name], value), name
    opt2 = torch.optim.Adam(g2.parameters(), lr=1e-4)
    opt2.load_state_dict(back["optimizer"])
    assert torch.equal(back["rng"]["torch"], state["rng"]["torch"])
    assert back["rng"]["numpy"] == state["rng"]["numpy"]


def test_atomic_save_replaces_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    atomic_torch_save({"step": 1}, path)
    atomic_torch_save({"step": 2}, path)
    assert load_checkpoint(path)["step"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_atomic_save_failure_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    atomic_torch_save({"step": 1}, path)

    class Unpicklable:
        def __reduce__(self):  # noqa: ANN204
            raise RuntimeError("cannot pickle this")

    with pytest.raises(RuntimeError):
        atomic_torch_save({"step": 2, "bad": Unpicklable()}, path)
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_load_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(EdgefillError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "garbage.pt").write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(EdgefillError, match="garbage.pt"):
        load_checkpoint(tmp_path / "garbage.pt")
    atomic_torch_save({"w": torch.zeros(1000)}, tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "torn.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(EdgefillError, match="torn.pt"):
        load_checkpoint(tmp_path / "torn.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(EdgefillError, match="empty.pt"):
        load_checkpoint(tmp_path / "empty.pt")
    with pytest.raises(EdgefillError, match="not found"):
        load_checkpoint(tmp_path)  # a directory


# ----------------------------------------------------------------------------- releases


def test_release_round_trip_fp32_is_exact(tmp_path: Path) -> None:
    g1, g2 = tiny_generators(2)
    out = save_release(tmp_path / "rel", g1.state_dict(), g2.state_dict(), TINY_CONFIG, half=False)
    assert sorted(p.name for p in out.iterdir()) == sorted([EDGE_FILE, INPAINT_FILE, CONFIG_FILE])
    e, i, cfg, doc = load_release(out)
    assert cfg == TINY_CONFIG and doc["dtype"] == "float32"
    assert not e.training and not i.training
    for a, b in ((g1, e), (g2, i)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k


def test_release_fp16_is_close_and_loads_as_float32(tmp_path: Path) -> None:
    g1, g2 = tiny_generators(2)
    out = save_release(tmp_path / "rel", g1.state_dict(), g2.state_dict(), TINY_CONFIG)
    from safetensors.torch import load_file

    assert all(v.dtype == torch.float16 for v in load_file(str(out / EDGE_FILE)).values())
    e, i, _, doc = load_release(out)
    assert doc["dtype"] == "float16"
    for a, b in ((g1, e), (g2, i)):
        for k, v in a.state_dict().items():
            w = b.state_dict()[k]
            assert w.dtype == torch.float32
            torch.testing.assert_close(w, v, rtol=1e-3, atol=1e-4)


def test_release_info_and_config(tmp_path: Path) -> None:
    g1, g2 = tiny_generators(0)
    out = save_release(
        tmp_path / "rel", g1.state_dict(), g2.state_dict(), TINY_CONFIG, info={"steps": 7}
    )
    cfg, doc = read_release_config(out)
    assert cfg == TINY_CONFIG and doc["steps"] == 7 and doc["format"] == 1
    assert json.loads((out / CONFIG_FILE).read_text())["model"]["width"] == 4


def _release(tmp_path: Path) -> Path:
    g1, g2 = tiny_generators(0)
    return save_release(tmp_path / "rel", g1.state_dict(), g2.state_dict(), TINY_CONFIG)


def test_release_errors(tmp_path: Path) -> None:
    with pytest.raises(EdgefillError, match="not found"):
        load_release(tmp_path / "nothing")
    rel = _release(tmp_path)

    cfg_path = rel / CONFIG_FILE
    good = cfg_path.read_text()
    cfg_path.write_text("{not json")
    with pytest.raises(EdgefillError, match="not a valid edgefill release config"):
        load_release(rel)
    doc = json.loads(good)
    doc["format"] = 99
    cfg_path.write_text(json.dumps(doc))
    with pytest.raises(EdgefillError, match="format 99"):
        load_release(rel)
    doc = json.loads(good)
    doc["model"]["depth"] = 3
    cfg_path.write_text(json.dumps(doc))
    with pytest.raises(EdgefillError, match="not a valid"):
        load_release(rel)
    doc = json.loads(good)
    doc["model"]["width"] = 8  # weights of width 4 under a config that says 8
    cfg_path.write_text(json.dumps(doc))
    with pytest.raises(EdgefillError, match="do not match the architecture"):
        load_release(rel)
    cfg_path.write_text(good)

    (rel / EDGE_FILE).write_bytes(b"garbage")
    with pytest.raises(EdgefillError, match="not a readable safetensors"):
        load_release(rel)
    (rel / EDGE_FILE).unlink()
    with pytest.raises(EdgefillError, match="missing weights"):
        load_release(rel)
    cfg_path.unlink()
    with pytest.raises(EdgefillError, match="no config.json"):
        load_release(rel)


def test_release_loading_never_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rel = _release(tmp_path)

    def forbidden(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("release loading must not use torch.load / pickle")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr("pickle.load", forbidden)
    monkeypatch.setattr("pickle.loads", forbidden)
    g1, g2, cfg, _ = load_release(rel)
    assert isinstance(g1, EdgeGenerator) and cfg.width == 4
    Inpainter.from_pretrained(rel)

    # A torch pickle renamed to .safetensors is refused, not unpickled.
    monkeypatch.undo()
    torch.save(tiny_generators(0)[0].state_dict(), rel / EDGE_FILE)
    with pytest.raises(EdgefillError, match="safetensors"):
        load_release(rel)


def test_release_from_a_trained_model_config(tmp_path: Path) -> None:
    cfg = ModelConfig(width=4, edge_blocks=2, inpaint_blocks=1, canny_sigma=1.5, edge_threshold=0.5)
    g1 = EdgeGenerator(4, 2)
    _, g2 = tiny_generators(0)
    rel = save_release(tmp_path / "rel", g1.state_dict(), g2.state_dict(), cfg)
    inp = Inpainter.from_pretrained(rel)
    assert inp.config == cfg and len(inp.g1.middle) == 2


def _exemplar_release_set_by_hand(folder: Path, **model_settings: object) -> Path:
    """A tiny exemplar release with a G2 for drawn edges, ``model_settings`` then written into
    its ``config.json`` by hand, as a release sets them (no retraining)."""
    cfg = ModelConfig(width=4, edge_blocks=1, inpaint_blocks=1, hole_fill="telea", exemplar=True)
    g2 = InpaintGenerator.from_config(cfg)
    rel = save_release(folder, EdgeGenerator(4, 1).state_dict(), g2.state_dict(), cfg)
    attach_drawn(rel, rel)
    doc = json.loads((rel / "config.json").read_text())
    doc["model"].update(model_settings)
    (rel / "config.json").write_text(json.dumps(doc))
    return rel


def test_a_release_config_sets_copy_detail_and_its_band_on_both_g2s_of_the_same_weights(
    tmp_path: Path,
) -> None:
    rel = _exemplar_release_set_by_hand(tmp_path / "rel", copy_detail=0.5, copy_detail_sigma=4)
    inp = Inpainter.from_pretrained(rel)
    assert inp.config.copy_detail == 0.5 and inp.config.copy_detail_sigma == 4
    assert inp.g2_drawn is not None
    for g2 in (inp.g2, inp.g2_drawn):
        assert g2.copy_detail == 0.5 and g2.copy_detail_sigma == 4


def test_drawn_copy_detail_sets_copy_detail_for_the_g2_for_drawn_edges_only(
    tmp_path: Path,
) -> None:
    rel = _exemplar_release_set_by_hand(tmp_path / "a", copy_detail=0.5, drawn_copy_detail=0.2)
    inp = Inpainter.from_pretrained(rel)
    assert inp.config.drawn_copy_detail == 0.2 and inp.g2_drawn is not None
    assert inp.g2.copy_detail == 0.5 and inp.g2_drawn.copy_detail == 0.2
    # None (the default, and every release before it) keeps copy_detail for both
    rel = _exemplar_release_set_by_hand(tmp_path / "b", copy_detail=0.5, drawn_copy_detail=None)
    assert Inpainter.from_pretrained(rel).g2_drawn.copy_detail == 0.5


# ----------------------------------------------------------------------------- reference checkpoints

REFERENCE_FIXTURE = Path(__file__).parent / "fixtures" / "edge-connect-tiny"


def _reference_generators() -> tuple[torch.nn.Module, torch.nn.Module]:
    """The fixture's generators loaded by hand, the way tests/test_networks.py checks them."""
    from edgefill.networks import InpaintGenerator, load_reference

    g1 = load_reference(
        EdgeGenerator(4, 1), torch.load(REFERENCE_FIXTURE / "EdgeModel_gen.pth", weights_only=True)
    )
    g2 = load_reference(
        InpaintGenerator(4, 1),
        torch.load(REFERENCE_FIXTURE / "InpaintingModel_gen.pth", weights_only=True),
    )
    return g1.eval(), g2.eval()


def test_reference_folder_loads_like_a_release() -> None:
    g1, g2, cfg, doc = load_release(REFERENCE_FIXTURE)
    assert cfg == ModelConfig(width=4, edge_blocks=1, inpaint_blocks=1)  # read from the weights
    assert cfg.hole_fill == "white" and doc["source"] == "knazeri/edge-connect"
    r1, r2 = _reference_generators()
    x3, x4 = torch.rand(1, 3, 24, 24), torch.rand(1, 4, 24, 24)
    with torch.no_grad():
        assert torch.equal(g1(x3), r1(x3)) and torch.equal(g2(x4), r2(x4))


def test_inpainter_and_cli_take_a_reference_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgefill import Inpainter as TopLevelInpainter
    from edgefill.cli import main

    rgb = np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    hole = np.zeros((40, 52), bool)
    hole[10:22, 14:34] = True
    direct = Inpainter.from_modules(*_reference_generators(), ModelConfig(4, 1, 1))
    want, _ = direct.inpaint_arrays(rgb, hole)
    # fp32 like `direct`: "auto" picks bf16 on CPUs with AVX512-BF16 or AMX.
    got, _ = TopLevelInpainter.from_pretrained(REFERENCE_FIXTURE, precision="fp32").inpaint_arrays(
        rgb, hole
    )
    assert np.array_equal(got, want) and not np.array_equal(got, rgb)

    from PIL import Image

    Image.fromarray(rgb).save(tmp_path / "p.png")
    Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "m.png")
    out = tmp_path / "out.png"
    args = ["inpaint", tmp_path / "p.png", "--mask", tmp_path / "m.png", "-o", out]
    args += ["--precision", "fp32"]
    assert main([str(a) for a in [*args, "--weights", REFERENCE_FIXTURE]]) == 0
    assert np.array_equal(np.asarray(Image.open(out)), want)

    # convert-reference writes an exact (float32) release that computes the same result.
    release = tmp_path / "release"
    assert main(["convert-reference", str(REFERENCE_FIXTURE), "-o", str(release)]) == 0
    assert "wrote release weights" in capsys.readouterr().out
    assert json.loads((release / CONFIG_FILE).read_text())["dtype"] == "float32"
    converted, _ = Inpainter.from_pretrained(release, precision="fp32").inpaint_arrays(rgb, hole)
    assert np.array_equal(converted, want)


def test_reference_folder_errors(tmp_path: Path) -> None:
    import shutil

    from edgefill.checkpoint import REFERENCE_EDGE_FILE, REFERENCE_INPAINT_FILE

    def folder(name: str, edge: str, inpaint: str) -> Path:
        """A folder whose reference file names hold the fixture files ``edge`` / ``inpaint``."""
        out = tmp_path / name
        out.mkdir()
        shutil.copy(REFERENCE_FIXTURE / f"{edge}.pth", out / REFERENCE_EDGE_FILE)
        shutil.copy(REFERENCE_FIXTURE / f"{inpaint}.pth", out / REFERENCE_INPAINT_FILE)
        return out

    # Generators swapped: each file holds the other network.
    with pytest.raises(EdgefillError, match="not a reference EdgeConnect generator"):
        load_release(folder("swapped", "InpaintingModel_gen", "EdgeModel_gen"))
    # A discriminator file where a generator belongs.
    with pytest.raises(EdgefillError, match="no 'generator' state dict"):
        load_release(folder("dis", "EdgeModel_dis", "InpaintingModel_gen"))
    # A pickle that would run code is refused, never executed (weights_only=True).
    evil = tmp_path / "evil"
    shutil.copytree(REFERENCE_FIXTURE, evil)
    torch.save({"generator": {}, "hook": Path("x")}, evil / REFERENCE_EDGE_FILE)
    with pytest.raises(EdgefillError, match="refused to load"):
        load_release(evil)
    # Only one of the two files: not a weights folder at all.
    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(REFERENCE_FIXTURE / "EdgeModel_gen.pth", half / REFERENCE_EDGE_FILE)
    with pytest.raises(EdgefillError, match="InpaintingModel_gen.pth"):
        load_release(half)


# ----------------------------------------------------------------------------- average


def _fp32_release(tmp_path: Path, name: str, seed: int, cfg: ModelConfig = TINY_CONFIG) -> Path:
    torch.manual_seed(seed)
    g1, g2 = EdgeGenerator(cfg.width, cfg.edge_blocks), InpaintGenerator.from_config(cfg)
    return save_release(tmp_path / name, g1.state_dict(), g2.state_dict(), cfg, half=False)


def test_average_releases_is_the_weighted_mean(tmp_path: Path) -> None:
    a, b = _fp32_release(tmp_path, "a", 1), _fp32_release(tmp_path, "b", 2)
    out = average_releases([a, b], tmp_path / "mix", ratios=[1, 3], half=False)
    e, i, cfg, doc = load_release(out)
    ea, ia, _, _ = load_release(a)
    eb, ib, _, _ = load_release(b)
    assert cfg == TINY_CONFIG and doc["ratios"] == [0.25, 0.75]
    assert doc["averaged_from"] == [str(a), str(b)]
    for mixed, first, second in ((e, ea, eb), (i, ia, ib)):
        sa, sb = first.state_dict(), second.state_dict()
        for k, v in mixed.state_dict().items():
            torch.testing.assert_close(v, 0.25 * sa[k] + 0.75 * sb[k])
        assert any(not torch.equal(sa[k], sb[k]) for k in sa)  # the test mixes different weights


def test_average_of_a_release_with_itself_is_that_release(tmp_path: Path) -> None:
    rel = _release(tmp_path)  # fp16, as shipped
    out = average_releases([rel, rel], tmp_path / "same")
    from safetensors.torch import load_file

    for name in (EDGE_FILE, INPAINT_FILE):
        a, b = load_file(str(rel / name)), load_file(str(out / name))
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_average_takes_the_first_release_settings_where_they_differ(tmp_path: Path) -> None:
    """A fine-tune exported without --base has its run's copy guide: the mean of it and the
    release it came from infers as the first release does."""
    released = dataclasses.replace(TINY_CONFIG, edge_guide=0.3)
    a = _fp32_release(tmp_path, "a", 1, released)
    b = _fp32_release(tmp_path, "b", 2, dataclasses.replace(TINY_CONFIG, edge_guide=1.0))
    assert load_release(average_releases([a, b], tmp_path / "ab"))[2] == released
    assert load_release(average_releases([b, a], tmp_path / "ba"))[2].edge_guide == 1.0


def test_average_errors(tmp_path: Path) -> None:
    a, b = _fp32_release(tmp_path, "a", 1), _fp32_release(tmp_path, "b", 2)
    with pytest.raises(EdgefillError, match="at least two"):
        average_releases([a], tmp_path / "o1")
    with pytest.raises(EdgefillError, match="3 ratios for 2"):
        average_releases([a, b], tmp_path / "o2", ratios=[1, 1, 1])
    for bad in ([1, -1], [0, 0], [1, float("nan")]):
        with pytest.raises(EdgefillError, match="ratios must be"):
            average_releases([a, b], tmp_path / "o3", ratios=bad)
    wider = _fp32_release(
        tmp_path, "wide", 0, ModelConfig(width=4, edge_blocks=2, inpaint_blocks=1)
    )
    with pytest.raises(EdgefillError, match="architecture differs"):
        average_releases([a, wider], tmp_path / "o4")
    assert not any((tmp_path / f"o{n}").exists() for n in range(1, 5))
