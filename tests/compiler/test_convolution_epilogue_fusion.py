"""The fusion pass forms convolution-epilogue fusions (`FusionStructure.CONVOLUTION_EPILOGUE`).

A convolution, its bias and ReLU, and a following 2x2 stride-2 max pool (the
four slices and three maximums the ONNX and torch front ends produce) become
one ``kind=kOutput`` fusion that ops/convolution_epilogue.py emits; chains
that emitter refuses (`candidate_refusal`) stay separate fusions. Results are
checked against the interpreter and the unfused module.
"""

from __future__ import annotations

import numpy as np
import pytest

from hlojit.api import compile_hlo
from hlojit.compiler.buffers import assign_buffers
from hlojit.compiler.codegen.options import CodegenOptions
from hlojit.compiler.fusion import (
    FusionRefusal, FusionStructure, explain_fusion, fusion_plans, module_kernels, plan_fusion,
)
from hlojit.compiler.pipeline import default_pipeline, optimizing_pipeline
from hlojit.ir.interpreter import evaluate
from hlojit.ir.module import Module
from hlojit.ir.opcodes import Opcode
from hlojit.ir.parser import parse_module
from tests.filecheck import filecheck

BATCH, CHANNELS, SIZE, FEATURES = 2, 3, 16, 4
IMAGE = f"f32[{BATCH},{CHANNELS},{SIZE},{SIZE}]"
CONV = f"f32[{BATCH},{FEATURES},{SIZE},{SIZE}]"
POOLED = f"f32[{BATCH},{FEATURES},{SIZE // 2},{SIZE // 2}]"
CONV_ATTRS = "window={size=3x3 pad=1_1x1_1}, dim_labels=bf01_oi01->bf01"


def _pool(value: str, root: bool = True) -> str:
    """The 2x2 stride-2 max pool of `value` as the front ends write it: four slices, three maximums."""
    corners = []
    for row in (0, 1):
        for col in (0, 1):
            corners.append(
                f"  s{row}{col} = {POOLED} slice({value}), slice={{[0:{BATCH}:1], [0:{FEATURES}:1], "
                f"[{row}:{SIZE - 1 + row}:2], [{col}:{SIZE - 1 + col}:2]}}"
            )
    return "\n".join([
        *corners,
        f"  m0 = {POOLED} maximum(s00, s01)",
        f"  m1 = {POOLED} maximum(m0, s10)",
        f"  {'ROOT ' if root else ''}pool = {POOLED} maximum(m1, s11)",
    ])


def conv_layer_hlo(pool: bool = True, bias_before_conv: bool = False) -> str:
    """maxpool(relu(conv(x, k) + b)); `bias_before_conv` puts the bias broadcast first in the text."""
    bias = f"  bias = {CONV} broadcast(b), dimensions={{1}}"
    relu_root = "" if pool else "ROOT "
    lines = [
        "HloModule conv_layer", "", "ENTRY main {",
        f"  x = {IMAGE} parameter(0)",
        f"  k = f32[{FEATURES},{CHANNELS},3,3] parameter(1)",
        f"  b = f32[{FEATURES}] parameter(2)",
        *([bias] if bias_before_conv else []),
        f"  conv = {CONV} convolution(x, k), {CONV_ATTRS}",
        *([] if bias_before_conv else [bias]),
        f"  biased = {CONV} add(conv, bias)",
        "  zero = f32[] constant(0)",
        f"  zeros = {CONV} broadcast(zero), dimensions={{}}",
        f"  {relu_root}relu = {CONV} maximum(biased, zeros)",
        *([_pool("relu")] if pool else []),
        "}",
    ]
    return "\n".join(lines) + "\n"


def _modules(text: str) -> tuple[Module, Module]:
    """The module as it enters fusion, and after the optimizing pipeline (fused)."""
    module = parse_module(text)
    return default_pipeline().run(module), optimizing_pipeline().run(module)


def _inputs(module: Module, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(p.shape.dims).astype(np.float32) for p in module.entry.parameters]


def _assert_same_results(before: Module, after: Module) -> None:
    """The fused module computes what the interpreter and the unfused compiled module compute."""
    args = _inputs(before)
    want = evaluate(before, args)
    fused = compile_hlo(after, optimize=False)(*args)
    unfused = compile_hlo(before, optimize=False)(*args)
    # Every epilogue step is the IEEE operation the unfused loop does, on the same accumulator;
    # only the convolution's summation order may differ from the interpreter's.
    np.testing.assert_allclose(fused, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fused, unfused, rtol=1e-6, atol=1e-6)


def _fusion_kinds(module: Module) -> list[str]:
    return [i.attrs["kind"] for i in module.entry.instructions if i.opcode is Opcode.FUSION]


def test_conv_bias_relu_pool_becomes_one_output_fusion():
    before, after = _modules(conv_layer_hlo(pool=True))
    filecheck(str(before), """
        CHECK: ENTRY main
        CHECK: [[CONV:conv]] = f32[2,4,16,16]{3,2,1,0} convolution(x, k)
        CHECK: add([[CONV]],
        CHECK: ROOT pool = f32[2,4,8,8]{3,2,1,0} maximum(
    """)
    filecheck(str(after), """
        CHECK-LABEL: fused_computation {
        CHECK:      [[X:param_[0-9]+]] = f32[2,3,16,16]{3,2,1,0} parameter
        CHECK:      [[K:param_[0-9]+]] = f32[4,3,3,3]{3,2,1,0} parameter
        CHECK:      conv = f32[2,4,16,16]{3,2,1,0} convolution([[X]], [[K]]), window={size=3x3 pad=1_1x1_1}
        CHECK:      biased = f32[2,4,16,16]{3,2,1,0} add(conv, bias)
        CHECK:      relu = f32[2,4,16,16]{3,2,1,0} maximum(biased, zeros)
        CHECK:      s00 = f32[2,4,8,8]{3,2,1,0} slice(relu)
        CHECK:      ROOT pool = f32[2,4,8,8]{3,2,1,0} maximum(m1, s11)
        CHECK-LABEL: ENTRY main
        CHECK-NOT:  convolution
        CHECK:      ROOT fusion = f32[2,4,8,8]{3,2,1,0} fusion({{.*}}), kind=kOutput, calls=fused_computation
    """)
    assert [k.what for k in module_kernels(after)] == ["fusion(kOutput)"]
    assert len(module_kernels(before)) >= 2
    (plan,) = fusion_plans(after).values()
    assert plan.structure is FusionStructure.CONVOLUTION_EPILOGUE
    _assert_same_results(before, after)


@pytest.mark.parametrize("bias_before_conv", [False, True])
def test_conv_bias_relu_without_pool_fuses_whatever_the_instruction_order(bias_before_conv):
    # With the bias broadcast first, the walk offers the convolution before the broadcast has
    # joined the epilogue; the convolution is offered again once the group is complete.
    before, after = _modules(conv_layer_hlo(pool=False, bias_before_conv=bias_before_conv))
    assert _fusion_kinds(after) == ["kOutput"]
    assert [i.opcode for i in after.entry.instructions if i.opcode is Opcode.CONVOLUTION] == []
    decisions = [d for d in explain_fusion(before) if d.producer == "conv"]
    assert decisions and all(d.fused for d in decisions), decisions
    _assert_same_results(before, after)


def test_the_fused_convolution_needs_no_scratch():
    # The unfused convolution pads its image into a planned temp; the fused one pads on the stack
    # (convolution_epilogue.STACK_IMAGE_BYTES), so its fusion gets no temps and no staged operands.
    before, after = _modules(conv_layer_hlo(pool=True))
    options = CodegenOptions()
    for module, name in ((before, "conv"), (after, "fusion")):
        layout = module.program_shape
        plan = assign_buffers(module, options, layout.parameters, layout.result).plan((), name)
        if module is before:
            assert plan.temps, "the unfused direct convolution plans a padded-image scratch"
        else:
            assert plan.temps == () and plan.staged_operands == ()
            assert plan.emitter is not None and plan.emitter.name.endswith("emit_output_fusion")


def _refused_module(epilogue: list[str], root_shape: str, extra_params: list[str] = (),
                    conv_attrs: str = CONV_ATTRS, conv_shape: str = CONV) -> str:
    return "\n".join([
        "HloModule refused", "", "ENTRY main {",
        f"  x = {IMAGE} parameter(0)",
        f"  k = f32[{FEATURES},{CHANNELS},3,3] parameter(1)",
        *extra_params,
        f"  conv = {conv_shape} convolution(x, k), {conv_attrs}",
        *epilogue,
        "}",
    ]) + "\n"


REFUSED = {
    # A residual: a full-size operand is not a scalar or a per-feature broadcast.
    "residual add": _refused_module(
        [f"  ROOT out = {CONV} add(conv, r)"], CONV, [f"  r = {CONV} parameter(2)"],
    ),
    # An expensive elementwise op is not one of the epilogue opcodes.
    "exponential": _refused_module(
        [f"  e = {CONV} exponential(conv)", f"  ROOT out = {CONV} multiply(e, e)"], CONV,
    ),
    # The convolution's result has two readers in the group: not a chain.
    "two readers": _refused_module(
        [f"  n = {CONV} negate(conv)", f"  ROOT out = {CONV} multiply(conv, n)"], CONV,
    ),
    # A reduction (global average pooling) cannot follow the convolution in its fusion.
    "reduction": _refused_module(
        ["  zero = f32[] constant(0)",
         f"  zeros = {CONV} broadcast(zero), dimensions={{}}",
         f"  relu = {CONV} maximum(conv, zeros)",
         f"  ROOT sum = f32[{BATCH},{FEATURES}] reduce(relu, zero), dimensions={{2,3}}, to_apply=add_f32"], CONV,
    ).replace("ENTRY main {", "add_f32 {\n  a = f32[] parameter(0)\n  c = f32[] parameter(1)\n"
              "  ROOT s = f32[] add(a, c)\n}\n\nENTRY main {"),
    # Stride 2 is not a direct convolution the epilogue emitter takes.
    "strided": _refused_module(
        ["  zero = f32[] constant(0)",
         f"  zeros = {POOLED} broadcast(zero), dimensions={{}}",
         f"  ROOT out = {POOLED} maximum(conv, zeros)"], POOLED,
        conv_attrs="window={size=3x3 stride=2x2 pad=1_1x1_1}, dim_labels=bf01_oi01->bf01", conv_shape=POOLED,
    ),
    # The emitter could take it, but unfused this convolution runs Winograd's lowering, which is
    # faster than the direct lowering the epilogue fusion runs: the planner leaves it unfused.
    "winograd": "\n".join([
        "HloModule winograd", "", "ENTRY main {",
        f"  x = f32[{BATCH},8,{SIZE},{SIZE}] parameter(0)",
        "  k = f32[16,8,3,3] parameter(1)",
        "  b = f32[16] parameter(2)",
        f"  conv = f32[{BATCH},16,{SIZE},{SIZE}] convolution(x, k), {CONV_ATTRS}",
        f"  bias = f32[{BATCH},16,{SIZE},{SIZE}] broadcast(b), dimensions={{1}}",
        f"  ROOT out = f32[{BATCH},16,{SIZE},{SIZE}] add(conv, bias)",
        "}",
    ]) + "\n",
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_consumer_the_emitter_refuses_stays_a_separate_fusion(case):
    before, after = _modules(REFUSED[case])
    assert [i.name for i in after.entry.instructions if i.opcode is Opcode.CONVOLUTION] == ["conv"]
    assert "kOutput" not in _fusion_kinds(after)
    refusals = [d for d in explain_fusion(before) if d.producer == "conv" and d.consumer is not None]
    assert refusals and not any(d.fused for d in refusals), refusals
    _assert_same_results(before, after)


def test_conv_and_dot_epilogues_share_a_module():
    # A pooled conv layer, flattened for a dot with its bias: two kOutput fusions, the convolution's emitted
    # by the convolution-epilogue emitter and the dot's by the dot emitter it hands other ones to.
    text = conv_layer_hlo(pool=True).replace("HloModule conv_layer", "HloModule cnn")
    text = text.replace("  ROOT pool =", "  pool =")
    flat = FEATURES * (SIZE // 2) ** 2
    head = [
        f"  flat = f32[{BATCH},{flat}] reshape(pool)",
        f"  w = f32[{flat},5] parameter(3)",
        f"  logits = f32[{BATCH},5] dot(flat, w), lhs_contracting_dims={{1}}, rhs_contracting_dims={{0}}",
        "  c = f32[5] parameter(4)",
        f"  cb = f32[{BATCH},5] broadcast(c), dimensions={{1}}",
        f"  ROOT out = f32[{BATCH},5] add(logits, cb)",
    ]
    text = text.replace("\n}\n", "\n" + "\n".join(head) + "\n}\n")
    before, after = _modules(text)
    assert _fusion_kinds(after) == ["kOutput", "kOutput"]
    # The flatten is left out of the pool's fusion so that the convolution can head it: unfused,
    # it is a view of the fusion's output, not a kernel.
    assert [i.opcode for i in after.entry.instructions if i.name == "flat"] == [Opcode.RESHAPE]
    assert [k.what for k in module_kernels(after)] == ["fusion(kOutput)", "fusion(kOutput)"]
    structures = sorted(p.structure.value for p in fusion_plans(after).values())
    assert structures == ["convolution epilogue", "dot epilogue"]
    _assert_same_results(before, after)


def test_the_winograd_refusal_is_a_cost_rule_codegen_does_not_apply():
    # The pass leaves a Winograd-sized convolution unfused, but a fusion of it (hand-written, or
    # from an older pass) is still planned as a convolution epilogue, which the emitter takes.
    module = parse_module(REFUSED["winograd"])
    members = [i for i in module.entry.instructions if i.opcode is not Opcode.PARAMETER]

    def shape_of(name):
        return module.entry.by_name[name].shape

    with pytest.raises(FusionRefusal, match="Winograd"):
        plan_fusion(members, ["out"], shape_of)
    plan = plan_fusion(members, ["out"], shape_of, enforce_costs=False)
    assert plan.structure is FusionStructure.CONVOLUTION_EPILOGUE
