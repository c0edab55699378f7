"""edgefill: edge-guided photo inpainting (EdgeConnect, Nazeri et al. 2019)."""

from edgefill.errors import EdgefillError

__version__ = "0.1.0"
__all__ = ["EdgefillError", "__version__"]
