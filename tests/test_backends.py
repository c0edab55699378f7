"""Fast paths stay within their stated tolerance of the fp32 torch reference.

Tolerances (docs/performance.md): fused instance norm fp32 and ONNX Runtime fp32 within 1e-4 of
torch fp32 on the network outputs (uint8 results within 1 level: rounding ties); bf16 within a
mean of 0.005 and a max of 0.04 on network outputs in [0, 1] (measured here: about 0.0016 and
0.01), i.e. results within a few levels.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, photo_array, tiny_generators

from edgefill.backends import TorchEngine, cpu_has_fast_bf16, resolve_precision
from edgefill.checkpoint import save_release
from edgefill.cli import main
from edgefill.config import ModelConfig
from edgefill.errors import EdgefillError
from edgefill.networks import (
    EdgeGenerator,
    FastInstanceNorm,
    InpaintGenerator,
    fuse_for_inference,
)
from edgefill.pipeline import Inpainter

FP32_TOL = 1e-4
BF16_MEAN_TOL, BF16_MAX_TOL = 0.005, 0.04
CFG8 = ModelConfig(width=8, edge_blocks=2, inpaint_blocks=2)


def generators(seed: int = 0, hole_fill: str = "white") -> tuple[EdgeGenerator, InpaintGenerator]:
    """Slightly wider than the conftest ones, so that bf16 rounding has layers to accumulate."""
    torch.manual_seed(seed)
    return EdgeGenerator(8, 2), InpaintGenerator(8, 2, hole_fill)


def inputs(seed: int = 0, size: int = 48) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "edge": torch.rand(1, 3, size, size, generator=g),
        "inpaint": torch.rand(1, 4, size, size, generator=g),
    }


def hole_of(h: int, w: int) -> np.ndarray:
    hole = np.zeros((h, w), bool)
    hole[h // 4 : h // 2, w // 5 : 3 * w // 5] = True
    return hole


def test_fused_instance_norm_matches_the_original() -> None:
    for net, x in zip(generators(1), inputs(1).values(), strict=True):
        ref = copy.deepcopy(net).eval()
        fused = fuse_for_inference(net).eval()
        assert any(isinstance(m, FastInstanceNorm) for m in fused.modules())
        assert not any(isinstance(m, torch.nn.InstanceNorm2d) for m in fused.modules())
        assert not any(hasattr(m, "weight_orig") for m in fused.modules())
        assert fused.state_dict().keys() == _baked_keys(ref)
        with torch.no_grad():
            assert (fused(x) - ref(x)).abs().max() < FP32_TOL


def _baked_keys(net: torch.nn.Module) -> set[str]:
    """State-dict keys after removing spectral norm (weight_orig/u/v -> weight)."""
    keys = set()
    for k in net.state_dict():
        if k.endswith(("weight_u", "weight_v")):
            continue
        keys.add(k.replace("weight_orig", "weight"))
    return keys


def test_fuse_is_idempotent() -> None:
    g1, _ = generators(2)
    once = fuse_for_inference(g1)
    n = sum(isinstance(m, FastInstanceNorm) for m in once.modules())
    assert sum(isinstance(m, FastInstanceNorm) for m in fuse_for_inference(once).modules()) == n


def test_bf16_engine_is_within_tolerance_of_fp32() -> None:
    g1, g2 = (fuse_for_inference(n).eval() for n in generators(3))
    fp32 = TorchEngine(g1, g2, torch.device("cpu"), "fp32")
    bf16 = TorchEngine(g1, g2, torch.device("cpu"), "bf16")
    with torch.inference_mode():
        for which, x in inputs(3).items():
            ref, out = fp32(which, x), bf16(which, x)
            assert out.dtype == torch.float32 and out.shape == ref.shape
            diff = (out - ref).abs()
            assert diff.mean() < BF16_MEAN_TOL and diff.max() < BF16_MAX_TOL, (which, diff.max())
    # The fp32 modules were not converted: the engine runs low-precision copies.
    assert all(p.dtype == torch.float32 for p in g2.parameters())


@pytest.mark.parametrize("hole_fill", ["white", "telea"])
def test_bf16_pipeline_results_are_within_a_few_levels(hole_fill: str) -> None:
    rgb = photo_array(96, 120, seed=1)
    hole = hole_of(96, 120)
    cfg = dataclasses.replace(CFG8, hole_fill=hole_fill)
    ref, ref_edges = Inpainter.from_modules(*generators(4, hole_fill), cfg).inpaint_arrays(
        rgb, hole
    )
    out, edges = Inpainter.from_modules(
        *generators(4, hole_fill), cfg, precision="bf16"
    ).inpaint_arrays(rgb, hole)
    np.testing.assert_array_equal(out[~hole], rgb[~hole])
    diff = np.abs(out.astype(int) - ref.astype(int))[hole]
    assert diff.mean() < 255 * BF16_MEAN_TOL and diff.max() < 255 * BF16_MAX_TOL
    assert np.abs(edges - ref_edges).max() < BF16_MAX_TOL


def test_precision_resolution() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if cpu_has_fast_bf16() else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", cpu, "onnx") == "fp32"
    with pytest.raises(EdgefillError, match="fp16"):
        resolve_precision("fp16", cpu)
    with pytest.raises(EdgefillError, match="onnx"):
        resolve_precision("bf16", cpu, "onnx")
    with pytest.raises(EdgefillError, match="precision"):
        resolve_precision("int8", cpu)
    with pytest.raises(EdgefillError, match="backend"):
        Inpainter.from_modules(*tiny_generators(0), TINY_CONFIG, backend="tensorrt")


def test_from_modules_defaults_to_exact_fp32_and_from_pretrained_to_auto(
    tiny_release: Path,
) -> None:
    assert Inpainter.from_modules(*tiny_generators(0), TINY_CONFIG).precision == "fp32"
    inp = Inpainter.from_pretrained(tiny_release)
    assert inp.precision == resolve_precision("auto", torch.device("cpu"))
    assert inp.hd_strategy == "crop" and inp.backend == "torch"


# ----------------------------------------------------------------------------- onnx


def test_onnx_engine_matches_torch_fp32() -> None:
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    ref = Inpainter.from_modules(*generators(5), CFG8)
    onnx = Inpainter.from_modules(*generators(5), CFG8, backend="onnx")
    assert onnx.engine.name == "onnx" and onnx.precision == "fp32"
    with torch.inference_mode():
        for size in (48, 36):  # dynamic height and width
            for which, x in inputs(5, size).items():
                assert (onnx.engine(which, x) - ref.engine(which, x)).abs().max() < FP32_TOL
    rgb = photo_array(70, 90, seed=2)
    hole = hole_of(70, 90)
    a, ea = ref.inpaint_arrays(rgb, hole)
    b, eb = onnx.inpaint_arrays(rgb, hole)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert np.abs(ea - eb).max() < 1e-3


@pytest.mark.parametrize("hole_fill", ["white", "telea"])
def test_export_onnx_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], hole_fill: str
) -> None:
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    g1, g2 = generators(6, hole_fill)
    cfg = dataclasses.replace(CFG8, hole_fill=hole_fill)
    rel = save_release(tmp_path / "rel", g1.state_dict(), g2.state_dict(), cfg, half=False)
    out = tmp_path / "onnx"
    assert main(["export-onnx", str(rel), "-o", str(out)]) == 0
    assert "edge.onnx" in capsys.readouterr().out
    for f in ("edge.onnx", "inpaint.onnx", "config.json", "edge.safetensors"):
        assert (out / f).is_file()
    onnx = Inpainter.from_pretrained(out, backend="onnx")
    ref = Inpainter.from_pretrained(rel, precision="fp32")
    rgb = photo_array(64, 64, seed=3)
    hole = hole_of(64, 64)
    a, _ = ref.inpaint_arrays(rgb, hole)
    b, _ = onnx.inpaint_arrays(rgb, hole)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    # The CLI runs the exported folder with the onnx backend and any HD strategy.
    from PIL import Image

    Image.fromarray(rgb).save(tmp_path / "p.png")
    Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "m.png")
    args = ["inpaint", str(tmp_path / "p.png"), "--mask", str(tmp_path / "m.png")]
    args += ["--weights", str(out), "--backend", "onnx", "--hd-strategy", "resize"]
    assert main([*args, "--working-size", "32", "-o", str(tmp_path / "r.png")]) == 0
    res = np.asarray(Image.open(tmp_path / "r.png"))
    np.testing.assert_array_equal(res[~hole], rgb[~hole])
    e_args = ["edges", str(tmp_path / "p.png"), "--mask", str(tmp_path / "m.png")]
    assert (
        main(
            [*e_args, "--weights", str(out), "--hd-strategy", "crop", "-o", str(tmp_path / "e.png")]
        )
        == 0
    )
    assert np.asarray(Image.open(tmp_path / "e.png")).shape == (64, 64)


def test_onnx_files_from_other_weights_or_settings_are_refused(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    from edgefill.onnx_export import export_onnx

    cfg = dataclasses.replace(CFG8, hole_fill="telea", exemplar=True)
    torch.manual_seed(8)
    g1, g2 = EdgeGenerator(8, 2), InpaintGenerator.from_config(cfg)
    rel = export_onnx(
        save_release(tmp_path / "rel", g1.state_dict(), g2.state_dict(), cfg), tmp_path / "rel"
    )
    assert Inpainter.from_pretrained(rel, backend="onnx").engine.name == "onnx"  # fresh: used
    config = rel / "config.json"
    fresh = config.read_text()
    doc = json.loads(fresh)
    doc["model"]["copy_detail"] = 0.5  # baked into the exported graph
    config.write_text(json.dumps(doc))
    with pytest.raises(
        EdgefillError,
        match=f"inpaint.onnx missing or not exported.*export-onnx {re.escape(str(rel))}",
    ):
        Inpainter.from_pretrained(rel, backend="onnx")
    config.write_text(fresh)
    torch.manual_seed(9)  # other weights saved over the release, the old graphs left beside them
    save_release(rel, EdgeGenerator(8, 2).state_dict(), g2.state_dict(), cfg)
    with pytest.raises(EdgefillError, match="edge.onnx missing"):
        Inpainter.from_pretrained(rel, backend="onnx")
    (rel / "edge.onnx").unlink()  # one graph missing: still not this release's export
    with pytest.raises(EdgefillError, match="edge.onnx missing"):
        Inpainter.from_pretrained(rel, backend="onnx")
    (rel / "inpaint.onnx").unlink()  # none left: exported on load
    assert Inpainter.from_pretrained(rel, backend="onnx").engine.name == "onnx"


@pytest.mark.parametrize(
    "options",
    [
        {"deep_blend": True},
        {"copy_detail": 1.0},
        {"deep_blend": True, "copy_detail": 0.5, "copy_detail_sigma": 4.0},
    ],
)
def test_the_exemplar_blend_options_export_to_onnx(options: dict) -> None:
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    import onnxruntime as ort

    from edgefill.onnx_export import export_generators

    torch.manual_seed(7)
    g1 = EdgeGenerator(8, 2)
    g2 = InpaintGenerator(8, 2, "telea", exemplar=True, **options).eval()
    sess = ort.InferenceSession(export_generators(g1, g2)["inpaint"])
    plain = InpaintGenerator(8, 2, "telea", exemplar=True).eval()
    plain.load_state_dict(g2.state_dict())
    x = torch.rand(1, 8, 96, 128, generator=torch.Generator().manual_seed(1))
    x[:, 4] = 0
    x[:, 4, 10:90, 20:110] = 1  # deep enough that the ramp reaches 1
    with torch.no_grad():
        ref, without = g2(x), plain(x)
    assert (ref - without).abs().max() > 0.01  # the option acts on this input
    out = torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0])
    assert (out - ref).abs().max() < FP32_TOL


def test_export_onnx_of_missing_weights_is_a_clear_error(tmp_path: Path) -> None:
    assert main(["export-onnx", str(tmp_path / "nope"), "-o", str(tmp_path / "o")]) == 2


def test_an_attention_g2_is_refused_by_onnx_export() -> None:
    from edgefill.onnx_export import export_generators

    g1, _ = tiny_generators(0)
    g2 = InpaintGenerator(TINY_CONFIG.width, 1, "telea", attention=True)
    with pytest.raises(EdgefillError, match="attention.*torch backend"):
        export_generators(g1, g2)


def test_onnx_backend_on_a_gpu_is_refused() -> None:
    with pytest.raises(EdgefillError):
        Inpainter.from_modules(*tiny_generators(0), TINY_CONFIG, device="cuda", backend="onnx")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_low_precision_is_within_tolerance(precision: str) -> None:
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("GPU without bf16")
    rgb = photo_array(96, 120, seed=1)
    hole = hole_of(96, 120)
    ref, _ = Inpainter.from_modules(*generators(4), CFG8).inpaint_arrays(rgb, hole)
    gpu = Inpainter.from_modules(*generators(4), CFG8, device="cuda", precision=precision)
    out, _ = gpu.inpaint_arrays(rgb, hole)
    np.testing.assert_array_equal(out[~hole], rgb[~hole])
    diff = np.abs(out.astype(int) - ref.astype(int))[hole]
    assert diff.mean() < 255 * BF16_MEAN_TOL and diff.max() < 255 * BF16_MAX_TOL
