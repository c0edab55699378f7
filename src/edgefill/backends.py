"""The backends that run the two generators: torch (fp32, bf16, fp16) and ONNX Runtime (fp32).

Both take and return float32 NCHW tensors, called as ``engine("edge" | "inpaint", x)``; the
pipeline (windows, pre-fills, composition) never needs to know which one runs.
docs/performance.md has the measurements and tolerances.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgefill.checkpoint import named_generators
from edgefill.config import BACKENDS, PRECISIONS
from edgefill.errors import EdgefillError, check_stop, require_extra


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise EdgefillError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")


def cpu_has_fast_bf16() -> bool:
    """True when the CPU runs bf16 convolutions natively (AMX tiles or AVX512-BF16)."""
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(torch.cpu, probe, None)
        try:
            if fn is not None and fn():
                return True
        except Exception:  # pragma: no cover - probes are private API
            continue
    return False


def resolve_precision(precision: str, device: torch.device, backend: str = "torch") -> str:
    """'auto' -> the fastest precision whose quality is verified for this device and backend."""
    if precision not in PRECISIONS:
        raise EdgefillError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if backend == "onnx":
        if precision not in ("auto", "fp32"):
            raise EdgefillError("the onnx backend runs fp32 only; use --precision fp32 or auto")
        return "fp32"
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if device.type == "cpu" and cpu_has_fast_bf16() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise EdgefillError("fp16 needs a CUDA GPU; on the CPU use bf16 or fp32")
    return precision


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# ----------------------------------------------------------------------------- engines


class LowPrecisionGenerator(nn.Module):
    """A generator run in bf16/fp16 except its last conv and activation, which stay fp32.

    The last conv has only 1-3 output channels (about 2 % of the FLOPs) but decides the output's
    rounding: in fp32 the result keeps full 8-bit precision instead of bf16's ~1/256 steps.
    """

    def __init__(self, net: nn.Module, dtype: torch.dtype, memory_format: torch.memory_format):
        super().__init__()
        decoder = net.decoder
        body = nn.Sequential(net.encoder, net.middle, *list(decoder)[:-1])
        self.body = copy.deepcopy(body).to(dtype=dtype, memory_format=memory_format)
        self.head = copy.deepcopy(decoder[-1]).float()
        self.dtype = dtype
        self.activate = net.activate  # the generator's own output function, in fp32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x in fp32: a pre-filled G2 adds its correction to the fp32 input, not a bf16 copy."""
        return self.activate(self.head(self.body(x.to(self.dtype)).float()), x.float())


# The stop event of the call this thread is running (``stoppable``), read by the torch nets.
_CALL = threading.local()


@contextlib.contextmanager
def stoppable(stop: threading.Event | None) -> Iterator[None]:
    """While inside, the torch passes this thread runs raise ``Stopped`` at their next
    convolution once ``stop`` is set; other threads' calls are not affected. (ONNX Runtime
    cannot be stopped inside a pass: the pipeline checks between passes.)"""
    before = getattr(_CALL, "stop", None)
    _CALL.stop = stop
    try:
        yield
    finally:
        _CALL.stop = before


def _stop_here(module: nn.Module, args: object) -> None:
    check_stop(getattr(_CALL, "stop", None))


def make_stoppable(net: nn.Module) -> None:
    """Let a call given up end at ``net``'s next convolution, not after the whole pass: one
    pass over a large window takes tens of seconds on a CPU. Once per module, however many
    engines share it."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d) and not getattr(m, "_edgefill_stoppable", False):
            m.register_forward_pre_hook(_stop_here)
            m._edgefill_stoppable = True


class TorchEngine:
    """Runs the generators with torch in a chosen precision; inputs and outputs are float32."""

    name = "torch"

    def __init__(
        self,
        g1: nn.Module,
        g2: nn.Module,
        device: torch.device,
        precision: str = "fp32",
        g2_drawn: nn.Module | None = None,
    ):
        self.device, self.precision = device, precision
        self.dtype = DTYPES[precision]
        # oneDNN (and cuDNN) run these convolutions faster on NHWC tensors: on the benchmark CPU
        # 1.2x in fp32 and 1.5x in bf16 (docs/performance.md, ablation).
        low = self.dtype != torch.float32
        self.memory_format = torch.channels_last
        self.nets: dict[str, nn.Module] = {}
        for k, net in named_generators(g1, g2, g2_drawn).items():
            if low and all(hasattr(net, a) for a in ("encoder", "middle", "decoder")):
                net = LowPrecisionGenerator(net, self.dtype, self.memory_format)
            elif low:  # an unknown module: run it all in low precision (a copy; g1/g2 stay fp32)
                net = copy.deepcopy(net).to(dtype=self.dtype)
            self.nets[k] = net.to(device=device, memory_format=self.memory_format)
            make_stoppable(self.nets[k])

    def __call__(self, which: str, x: torch.Tensor) -> torch.Tensor:
        net = self.nets[which]
        dtype = torch.float32 if isinstance(net, LowPrecisionGenerator) else self.dtype
        x = x.to(self.device, dtype, non_blocking=True).contiguous(memory_format=self.memory_format)
        return net(x).float()


class OnnxEngine:
    """Runs ONNX exports of the generators with ONNX Runtime (CPU, fp32)."""

    name = "onnx"
    precision = "fp32"

    def __init__(self, models: dict[str, bytes | str | Path], threads: int | None = None):
        require_extra("onnx", "the onnx backend", "onnxruntime")
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Memory patterns pre-plan one big block per input shape; window sizes vary, and without
        # them the arena reuses buffers: lower peak RSS (about -15 % at 512 px), no slower.
        opts.enable_mem_pattern = False
        self.sessions = {}
        for k, src in models.items():
            data = str(src) if isinstance(src, Path) else src
            self.sessions[k] = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        self.inputs = {k: s.get_inputs()[0].name for k, s in self.sessions.items()}

    def __call__(self, which: str, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().float().cpu().numpy())
        out = self.sessions[which].run(None, {self.inputs[which]: arr})[0]
        return torch.from_numpy(out)


Engine = TorchEngine | OnnxEngine


def make_engine(
    backend: str,
    g1: nn.Module,
    g2: nn.Module,
    device: torch.device,
    precision: str,
    threads: int | None = None,
    onnx_models: dict[str, bytes | str | Path] | None = None,
    g2_drawn: nn.Module | None = None,
) -> Engine:
    """The engine for ``backend`` around fused, eval-mode generators ``g1`` and ``g2`` (and
    ``g2_drawn``, the G2 for drawn edges, when the release has one).

    ``onnx_models``: {'edge': path-or-bytes, 'inpaint': ...}; None exports the generators in
    memory.
    """
    check_backend(backend)
    if backend == "onnx":
        if onnx_models is None:
            from edgefill.onnx_export import export_generators

            onnx_models = dict(export_generators(g1, g2, g2_drawn=g2_drawn))
        return OnnxEngine(onnx_models, threads)
    return TorchEngine(g1, g2, device, precision, g2_drawn)
