"""ONNX export of the two generators, for the ``onnx`` backend (ONNX Runtime on the CPU).

    edgefill export-onnx WEIGHTS -o DIR     # DIR/edge.onnx, DIR/inpaint.onnx (+ the release;
                                            # + inpaint_drawn.onnx when it has a drawn-edge G2)
    Inpainter.from_pretrained(DIR, backend="onnx")

The graphs take float32 NCHW inputs of any batch size and any height/width that is a multiple
of 4 (the pipeline pads), exactly the tensors the torch generators take. Each graph carries a
fingerprint of the weights and output settings it was exported from, so that files left beside a
release that changed since (new weights, an edited ``config.json``) are refused, not run.
"""

from __future__ import annotations

import copy
import hashlib
import io
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgefill.checkpoint import (
    CONFIG_FILE,
    DRAWN_FILE,
    EDGE_FILE,
    INPAINT_FILE,
    load_drawn_generator,
    load_release,
    named_generators,
    resolve_weights,
)
from edgefill.errors import EdgefillError, require_extra
from edgefill.networks import fuse_for_inference

OPSET = 17
ONNX_FILES = {"edge": "edge.onnx", "inpaint": "inpaint.onnx", "inpaint_drawn": "inpaint_drawn.onnx"}
CHECK_TOLERANCE = 1e-3  # max |onnxruntime - torch| on a random input after export
FINGERPRINT_KEY = "edgefill_fingerprint"  # ONNX metadata: what the graph was exported from


def fingerprint(net: nn.Module) -> str:
    """A hash of what an exported graph of ``net`` computes: its inference weights (spectral norm
    baked, float32) and its plain settings (``copy_detail``, ``hole_fill``, ...: every bool,
    number or string attribute but ``training``, so a setting added later is covered too)."""
    baked = fuse_for_inference(copy.deepcopy(net)).float().cpu()
    h = hashlib.sha256(type(net).__name__.encode())
    settings = {
        k: v
        for k, v in vars(net).items()
        if isinstance(v, (bool, int, float, str)) and k != "training"
    }
    h.update(repr(sorted(settings.items())).encode())
    for key, value in sorted(baked.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def stored_fingerprint(path: Path) -> str | None:
    """The fingerprint an exported ``.onnx`` file carries (None: an export without one)."""
    require_extra("onnx", "the onnx backend", "onnx")
    import onnx

    props = onnx.load(str(path), load_external_data=False).metadata_props
    return next((p.value for p in props if p.key == FINGERPRINT_KEY), None)


def exported_files(folder: Path, nets: dict[str, nn.Module]) -> dict[str, Path] | None:
    """The folder's ``.onnx`` files for ``nets`` (see ``named_generators``) when it has any,
    None when it has none (the engine then exports on load). Files that are missing or were
    exported from other weights or settings than ``nets`` are an error: running them would
    silently give another model's results."""
    files = {name: folder / ONNX_FILES[name] for name in nets}
    if not any(p.is_file() for p in files.values()):
        return None
    stale = [
        files[name].name
        for name, net in nets.items()
        if not files[name].is_file() or stored_fingerprint(files[name]) != fingerprint(net)
    ]
    if stale:
        raise EdgefillError(
            f"{folder}: {', '.join(stale)} missing or not exported from this release's weights "
            f"and config.json; run `edgefill export-onnx {folder} -o {folder}` again (or delete "
            "the .onnx files to export on load)"
        )
    return files


def _export(module: nn.Module, in_channels: int, opset: int = OPSET) -> bytes:
    import onnx

    mark = fingerprint(module)
    module = fuse_for_inference(module).float().cpu().eval()
    dummy = torch.rand(1, in_channels, 64, 64)
    buf = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        kwargs = dict(
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": axes, "output": axes},
            opset_version=opset,
        )
        try:
            torch.onnx.export(module, (dummy,), buf, dynamo=False, **kwargs)
        except TypeError:  # torch without the dynamo switch
            torch.onnx.export(module, (dummy,), buf, **kwargs)
    model = onnx.load_from_string(buf.getvalue())
    onnx.helper.set_model_props(model, {FINGERPRINT_KEY: mark})
    return model.SerializeToString()


def export_generators(
    edge_generator: nn.Module,
    inpaint_generator: nn.Module,
    opset: int = OPSET,
    g2_drawn: nn.Module | None = None,
) -> dict[str, bytes]:
    """Serialized ONNX models {'edge': bytes, 'inpaint': bytes} of both generators (and
    'inpaint_drawn' for ``g2_drawn``, the release's G2 for drawn edges, when given)."""
    if getattr(inpaint_generator, "attend", None) is not None:
        # Its coarse grid and query chunks depend on the photo size: a traced graph would not.
        raise EdgefillError(
            "a G2 with model.attention cannot be exported to ONNX; use the torch backend"
        )
    require_extra("onnx", "ONNX export", "onnx")  # torch's exporter writes through it
    nets = named_generators(edge_generator, inpaint_generator, g2_drawn)
    return {k: _export(net, input_channels(net), opset) for k, net in nets.items()}


def input_channels(net: nn.Module) -> int:
    """A generator's input channels: G1 takes 3, G2 says (``in_channels``)."""
    return getattr(net, "in_channels", 3)


def check_export(module: nn.Module, model: bytes, in_channels: int, size: int = 64) -> float:
    """Max abs difference between ONNX Runtime and torch (fp32) on a random input."""
    import onnxruntime as ort

    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    x = torch.rand(1, in_channels, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = module.float().cpu().eval()(x).numpy()
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    return float(np.abs(out - ref).max())


def export_onnx(weights: str | Path | None, out_dir: str | Path, check: bool = True) -> Path:
    """Write ``edge.onnx`` and ``inpaint.onnx`` (and ``inpaint_drawn.onnx`` for a release with
    a G2 for drawn edges) for a release folder into ``out_dir``.

    When ``out_dir`` is another folder, the release files (config + safetensors) are copied
    along, so it is a complete release usable by both backends. With ``check`` (and
    onnxruntime installed) each graph is run once and compared with torch.
    """
    src = resolve_weights(weights)
    out = Path(out_dir)
    g1, g2, cfg, _doc = load_release(src)
    g2_drawn = load_drawn_generator(src, cfg)
    nets = named_generators(g1, g2, g2_drawn)
    models = export_generators(g1, g2, g2_drawn=g2_drawn)
    if check:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            check = False
    if check:
        for name, net in nets.items():
            err = check_export(net, models[name], input_channels(net))
            if not err <= CHECK_TOLERANCE:
                raise EdgefillError(
                    f"the ONNX export of the {name} generator differs from torch by {err:.3g} "
                    f"(> {CHECK_TOLERANCE}); please report this with your torch/onnxruntime versions"
                )
    try:
        out.mkdir(parents=True, exist_ok=True)
        if out.resolve() != src.resolve():
            for f in (CONFIG_FILE, EDGE_FILE, INPAINT_FILE):
                shutil.copy2(src / f, out / f)
            if g2_drawn is None:
                (out / DRAWN_FILE).unlink(missing_ok=True)
            else:
                shutil.copy2(src / DRAWN_FILE, out / DRAWN_FILE)
        for name, data in models.items():
            tmp = out / (ONNX_FILES[name] + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(out / ONNX_FILES[name])
        for name in ONNX_FILES.keys() - models.keys():  # stale: from an earlier export here
            (out / ONNX_FILES[name]).unlink(missing_ok=True)
    except OSError as exc:
        raise EdgefillError(f"{out}: cannot write the ONNX files ({exc.strerror})") from None
    return out
