"""Write tests/fixtures/edge-connect-tiny/: checkpoints made by the reference code, in its format.

    python scripts/make_reference_fixture.py /path/to/knazeri/edge-connect

The reference repository's own ``src/networks.py`` (imported from the given checkout, not copied
here) builds its four networks at 1/16 of the released width (4 channels where it has 64, one
residual block): it is handed a ``torch.nn`` whose conv and norm layers divide the reference's
channel counts by 16. The networks are saved exactly as the reference's ``models.py`` saves them
(``{'iteration': n, 'generator': sd}`` and ``{'discriminator': sd}``), and each network's outputs
on fixed inputs, in eval and in train mode, go to ``expected.pt``. ``tests/test_networks.py``
loads the files with edgefill alone and compares, so a drift of edgefill's modules from the
reference (a renamed layer, a changed padding or activation) fails there.

The fixture is committed; rerun this only to regenerate it (the outputs are seeded).
"""

from __future__ import annotations

import argparse
import importlib.util
import types
from pathlib import Path

import torch
from torch import nn

SCALE = 16  # 64 -> 4 channels
WIDE = {64, 128, 256, 512}  # the reference's hidden widths; 1-4 channel inputs/outputs stay
INPUTS = {  # file stem -> input channels (the reference's own input layouts)
    "EdgeModel_gen": 3,  # gray, edges, mask
    "InpaintingModel_gen": 4,  # RGB, edges
    "EdgeModel_dis": 2,  # gray, edges
    "InpaintingModel_dis": 3,  # RGB
}


def _narrow(c: int) -> int:
    return c // SCALE if c in WIDE else c


def _scaled_nn() -> types.SimpleNamespace:
    """torch.nn with Conv2d / ConvTranspose2d / InstanceNorm2d taking 1/16 of the wide widths."""
    ns = types.SimpleNamespace(**{k: getattr(nn, k) for k in dir(nn) if not k.startswith("__")})

    def conv(cls: type) -> object:
        def make(in_channels: int, out_channels: int, *args: object, **kw: object) -> nn.Module:
            return cls(_narrow(in_channels), _narrow(out_channels), *args, **kw)

        return make

    ns.Conv2d = conv(nn.Conv2d)
    ns.ConvTranspose2d = conv(nn.ConvTranspose2d)
    ns.InstanceNorm2d = lambda c, *a, **kw: nn.InstanceNorm2d(_narrow(c), *a, **kw)
    return ns


def load_reference_networks(repo: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("ec_networks", repo / "src" / "networks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.nn = _scaled_nn()  # read by the constructors at call time
    return module


def build(ref: types.ModuleType) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    nets = {
        "EdgeModel_gen": ref.EdgeGenerator(residual_blocks=1, use_spectral_norm=True),
        "InpaintingModel_gen": ref.InpaintGenerator(residual_blocks=1),
        "EdgeModel_dis": ref.Discriminator(in_channels=2, use_sigmoid=True),
        "InpaintingModel_dis": ref.Discriminator(in_channels=3, use_sigmoid=True),
    }
    for net in nets.values():
        # The reference's own init, with a larger gain than its 0.02 so that every layer leaves
        # a clear mark on the outputs of so small a network.
        net.init_weights("normal", 0.3)
    return nets


def outputs(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    out = net(x)
    if isinstance(out, tuple):  # discriminator: (sigmoid(logits), [conv1..conv5])
        return [out[0].detach(), *[f.detach() for f in out[1]]]
    return [out.detach()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reference", type=Path, help="a checkout of knazeri/edge-connect")
    ap.add_argument("-o", "--output", type=Path, default=Path("tests/fixtures/edge-connect-tiny"))
    args = ap.parse_args()
    ref = load_reference_networks(args.reference)
    nets = build(ref)
    args.output.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(1)
    expected: dict[str, dict[str, object]] = {}
    for name, net in nets.items():
        key = "discriminator" if name.endswith("_dis") else "generator"
        doc = {key: net.state_dict()}
        if key == "generator":
            doc = {"iteration": 1000, **doc}
        torch.save(doc, args.output / f"{name}.pth")  # as the reference's models.py save()
        x = torch.rand(1, INPUTS[name], 24, 24, generator=gen)
        with torch.no_grad():
            evals = outputs(net.eval(), x)
            trains = outputs(net.train(), x)  # spectral norm runs a power iteration here
        expected[name] = {"input": x, "eval": evals, "train": trains}
    torch.save(expected, args.output / "expected.pt")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
