"""hlojit as a torch.compile backend (needs the optional `torch` extra).

    import torch
    model = torch.compile(model, backend="hlojit")     # registered through the torch_dynamo_backends entry point

Inference and training both work: AOT autograd hands hlojit core-ATen forward
and backward graphs, which are lowered to hlojit IR and compiled to native
code. Graphs with ops hlojit does not lower, or with dynamic shapes, run in
eager PyTorch after one warning (`HlojitFallbackWarning`); set
`HLOJIT_STRICT=1` to make that an error. `import hlojit` never imports torch;
this package does.
"""

from __future__ import annotations

from .aten_ops import ops_table_markdown, supported_overloads
from .backend import BackendOptions, decomposition_table, hlojit_backend
from .cache import cache_info, clear_cache
from .errors import UnsupportedGraphError
from .fallback import HlojitFallbackWarning, reset_fallback_warnings

__all__ = [
    "BackendOptions", "HlojitFallbackWarning", "UnsupportedGraphError", "cache_info", "clear_cache",
    "decomposition_table", "hlojit_backend", "ops_table_markdown", "reset_fallback_warnings", "supported_overloads",
]
