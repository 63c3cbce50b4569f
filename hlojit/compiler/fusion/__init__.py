"""Fusion: chains of elementwise and shape ops and reductions become one loop nest.

Modules, one concept each:

    indexing.py   how each dimension of a fused instruction is indexed (loop variables)
    plan.py       what a set of fused instructions forms (loop, reduction, sibling
                  reductions, row fusion, dot epilogue: a `kOutput` fusion whose dot
                  writes the output and whose elementwise tail runs over it in place,
                  convolution epilogue: a `kOutput` fusion whose convolution applies
                  bias, activation and a 2x2 max pool to its accumulators)
                  and how it is evaluated: the contract with codegen
                  (`plan_fusion`), analyzed incrementally by the pass (`extend_analysis`)
    decisions.py  which instructions may fuse at all; `FusionDecision` records
    grouping.py   choosing the groups: producer-consumer fusion, sibling (multi-output) fusion
    outline.py    groups -> `fusion` instructions and fused computations
    fuse.py       the pass over a module; `explain_fusion`, `fusion_plans`
    cost.py       kernels a lowered module launches and the bytes they move

The pass is registered as "fusion" in `hlojit/compiler/passes/fusion.py`;
`hlojit.compiler.pipeline.optimizing_pipeline()` runs it after simplification and layout
assignment.

Entry points:

    fuse_module(module, record=None) -> Module      the pass (record receives each FusionDecision)
    explain_fusion(module) -> list[FusionDecision]  every decision, run on the module entering fusion
    fusion_plans(fused_module) -> {name: FusionPlan} how codegen will emit each fused computation
    kernel_count(module), bytes_moved(module), module_kernels(module)   what the lowered module launches
"""

from .cost import Kernel, bytes_moved, kernel_count, module_kernels
from .decisions import FusionDecision
from .fuse import explain_fusion, fuse_module, fusion_plans, fusion_scopes
from .plan import FusionAnalysis, FusionPlan, FusionRefusal, FusionStructure, analyze_fusion, plan_fusion

__all__ = [
    "FusionAnalysis", "FusionDecision", "FusionPlan", "FusionRefusal", "FusionStructure", "Kernel",
    "analyze_fusion", "bytes_moved", "explain_fusion", "fuse_module", "fusion_plans", "fusion_scopes",
    "kernel_count", "module_kernels", "plan_fusion",
]
