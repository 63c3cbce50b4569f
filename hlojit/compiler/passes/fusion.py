"""Fusion: elementwise/shape chains, reductions and their consumers become single loop nests.

The pass itself lives in the `hlojit.compiler.fusion` package (grouping rules,
the plan shared with codegen, outlining); this module registers it.
"""

from __future__ import annotations

from hlojit.ir.module import Module

from ..fusion import fuse_module
from ..pipeline import register_pass


@register_pass("fusion", "fuse elementwise/shape ops, reductions and their consumers into fusion instructions")
def fusion(module: Module) -> Module:
    return fuse_module(module)
