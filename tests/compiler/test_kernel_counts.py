"""Kernel counts and bytes moved for standard workloads, before and after fusion.

The workloads are HLO text in the form JAX lowers them to (the reshape and
broadcast chains of `jax.jit(f).lower(...).as_text()`, as in the corpus), with
sizes as parameters so the benchmarks can build large versions. The counts
are what the lowered module launches (`hlojit.compiler.fusion.module_kernels`);
asserting them exactly keeps fusion from regressing silently.
"""

from __future__ import annotations

import numpy as np
import pytest

from hlojit.compiler.fusion import bytes_moved, kernel_count, module_kernels
from hlojit.compiler.pipeline import default_pipeline, optimizing_pipeline
from hlojit.ir.interpreter import evaluate
from hlojit.ir.module import Module
from hlojit.ir.parser import parse_module

_REDUCERS = """
max_f32 {
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  ROOT m = f32[] maximum(a, b)
}

add_f32 {
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  ROOT s = f32[] add(a, b)
}
"""


def softmax_hlo(rows: int, cols: int) -> str:
    """jax.nn.softmax(x, axis=-1) on f32[rows, cols]."""
    return f"""HloModule jit_softmax
{_REDUCERS}
ENTRY main {{
  x = f32[{rows},{cols}] parameter(0)
  ninf = f32[] constant(-inf)
  reduce_max = f32[{rows}] reduce(x, ninf), dimensions={{1}}, to_apply=max_f32
  ninf_b = f32[{rows}] broadcast(ninf), dimensions={{}}
  max = f32[{rows}] maximum(reduce_max, ninf_b)
  max_r = f32[{rows},1] reshape(max)
  max_b = f32[{rows},1] broadcast(max_r), dimensions={{0,1}}
  max_r2 = f32[{rows}] reshape(max_b)
  max_bb = f32[{rows},{cols}] broadcast(max_r2), dimensions={{0}}
  shifted = f32[{rows},{cols}] subtract(x, max_bb)
  e = f32[{rows},{cols}] exponential(shifted)
  zero = f32[] constant(0)
  sum = f32[{rows}] reduce(e, zero), dimensions={{1}}, to_apply=add_f32
  sum_r = f32[{rows},1] reshape(sum)
  sum_b = f32[{rows},1] broadcast(sum_r), dimensions={{0,1}}
  sum_r2 = f32[{rows}] reshape(sum_b)
  sum_bb = f32[{rows},{cols}] broadcast(sum_r2), dimensions={{0}}
  ROOT out = f32[{rows},{cols}] divide(e, sum_bb)
}}
"""


def layernorm_hlo(rows: int, cols: int) -> str:
    """Layer normalization over the last axis with scale and bias, two-pass variance (as JAX writes it)."""
    return f"""HloModule jit_layernorm
{_REDUCERS}
ENTRY main {{
  x = f32[{rows},{cols}] parameter(0)
  zero = f32[] constant(0)
  sum = f32[{rows}] reduce(x, zero), dimensions={{1}}, to_apply=add_f32
  sum_r = f32[{rows},1] reshape(sum)
  n = f32[] constant({cols})
  n_b = f32[{rows},1] broadcast(n), dimensions={{}}
  mean = f32[{rows},1] divide(sum_r, n_b)
  mean_b = f32[{rows},1] broadcast(mean), dimensions={{0,1}}
  mean_r = f32[{rows}] reshape(mean_b)
  mean_bb = f32[{rows},{cols}] broadcast(mean_r), dimensions={{0}}
  centered = f32[{rows},{cols}] subtract(x, mean_bb)
  square = f32[{rows},{cols}] multiply(centered, centered)
  sq_sum = f32[{rows}] reduce(square, zero), dimensions={{1}}, to_apply=add_f32
  sq_sum_r = f32[{rows},1] reshape(sq_sum)
  var = f32[{rows},1] divide(sq_sum_r, n_b)
  eps = f32[] constant(1e-05)
  eps_b = f32[{rows},1] broadcast(eps), dimensions={{}}
  var_eps = f32[{rows},1] add(var, eps_b)
  inv = f32[{rows},1] rsqrt(var_eps)
  inv_b = f32[{rows},1] broadcast(inv), dimensions={{0,1}}
  inv_r = f32[{rows}] reshape(inv_b)
  inv_bb = f32[{rows},{cols}] broadcast(inv_r), dimensions={{0}}
  normed = f32[{rows},{cols}] multiply(centered, inv_bb)
  g = f32[{cols}] parameter(1)
  g_r = f32[1,{cols}] reshape(g)
  g_b = f32[1,{cols}] broadcast(g_r), dimensions={{0,1}}
  g_r2 = f32[{cols}] reshape(g_b)
  g_bb = f32[{rows},{cols}] broadcast(g_r2), dimensions={{1}}
  scaled = f32[{rows},{cols}] multiply(normed, g_bb)
  b = f32[{cols}] parameter(2)
  b_r = f32[1,{cols}] reshape(b)
  b_b = f32[1,{cols}] broadcast(b_r), dimensions={{0,1}}
  b_r2 = f32[{cols}] reshape(b_b)
  b_bb = f32[{rows},{cols}] broadcast(b_r2), dimensions={{1}}
  ROOT out = f32[{rows},{cols}] add(scaled, b_bb)
}}
"""


def gelu_hlo(rows: int, cols: int) -> str:
    """jax.nn.gelu(x, approximate=True)."""
    shape = f"f32[{rows},{cols}]"
    return f"""HloModule jit_gelu

ENTRY main {{
  x = {shape} parameter(0)
  x2 = {shape} multiply(x, x)
  x3 = {shape} multiply(x2, x)
  c0 = f32[] constant(0.044715)
  c0_b = {shape} broadcast(c0), dimensions={{}}
  x3c = {shape} multiply(x3, c0_b)
  inner = {shape} add(x, x3c)
  c1 = f32[] constant(0.797884583)
  c1_b = {shape} broadcast(c1), dimensions={{}}
  scaled = {shape} multiply(inner, c1_b)
  t = {shape} tanh(scaled)
  one = f32[] constant(1)
  one_b = {shape} broadcast(one), dimensions={{}}
  t1 = {shape} add(t, one_b)
  half = f32[] constant(0.5)
  half_b = {shape} broadcast(half), dimensions={{}}
  t2 = {shape} multiply(t1, half_b)
  ROOT out = {shape} multiply(x, t2)
}}
"""


def mlp_hlo(batch: int, d_in: int, d_hidden: int, d_out: int) -> str:
    """relu(x @ w1 + b1) @ w2 + b2."""
    return f"""HloModule jit_mlp

relu {{
  a = f32[{batch},{d_hidden}] parameter(0)
  zero = f32[] constant(0)
  zero_b = f32[{batch},{d_hidden}] broadcast(zero), dimensions={{}}
  ROOT r = f32[{batch},{d_hidden}] maximum(a, zero_b)
}}

ENTRY main {{
  x = f32[{batch},{d_in}] parameter(0)
  w1 = f32[{d_in},{d_hidden}] parameter(1)
  h = f32[{batch},{d_hidden}] dot(x, w1), lhs_contracting_dims={{1}}, rhs_contracting_dims={{0}}
  b1 = f32[{d_hidden}] parameter(2)
  b1_r = f32[1,{d_hidden}] reshape(b1)
  b1_b = f32[1,{d_hidden}] broadcast(b1_r), dimensions={{0,1}}
  b1_r2 = f32[{d_hidden}] reshape(b1_b)
  b1_bb = f32[{batch},{d_hidden}] broadcast(b1_r2), dimensions={{1}}
  hb = f32[{batch},{d_hidden}] add(h, b1_bb)
  a = f32[{batch},{d_hidden}] call(hb), to_apply=relu
  w2 = f32[{d_hidden},{d_out}] parameter(3)
  y = f32[{batch},{d_out}] dot(a, w2), lhs_contracting_dims={{1}}, rhs_contracting_dims={{0}}
  b2 = f32[{d_out}] parameter(4)
  b2_r = f32[1,{d_out}] reshape(b2)
  b2_b = f32[1,{d_out}] broadcast(b2_r), dimensions={{0,1}}
  b2_r2 = f32[{d_out}] reshape(b2_b)
  b2_bb = f32[{batch},{d_out}] broadcast(b2_r2), dimensions={{1}}
  ROOT out = f32[{batch},{d_out}] add(y, b2_bb)
}}
"""


def attention_hlo(heads: int, seq: int, dim: int) -> str:
    """softmax(q @ k^T / sqrt(d)) @ v per head (batched dots)."""
    scores = f"f32[{heads},{seq},{seq}]"
    rows = f"f32[{heads},{seq}]"
    return f"""HloModule jit_attention
{_REDUCERS}
ENTRY main {{
  q = f32[{heads},{seq},{dim}] parameter(0)
  k = f32[{heads},{seq},{dim}] parameter(1)
  s = {scores} dot(q, k), lhs_batch_dims={{0}}, lhs_contracting_dims={{2}}, rhs_batch_dims={{0}}, rhs_contracting_dims={{2}}
  scale = f32[] constant({float(np.sqrt(dim))})
  scale_b = {scores} broadcast(scale), dimensions={{}}
  scaled = {scores} divide(s, scale_b)
  ninf = f32[] constant(-inf)
  reduce_max = {rows} reduce(scaled, ninf), dimensions={{2}}, to_apply=max_f32
  ninf_b = {rows} broadcast(ninf), dimensions={{}}
  max = {rows} maximum(reduce_max, ninf_b)
  max_r = f32[{heads},{seq},1] reshape(max)
  max_b = f32[{heads},{seq},1] broadcast(max_r), dimensions={{0,1,2}}
  max_r2 = {rows} reshape(max_b)
  max_bb = {scores} broadcast(max_r2), dimensions={{0,1}}
  shifted = {scores} subtract(scaled, max_bb)
  e = {scores} exponential(shifted)
  zero = f32[] constant(0)
  sum = {rows} reduce(e, zero), dimensions={{2}}, to_apply=add_f32
  sum_r = f32[{heads},{seq},1] reshape(sum)
  sum_b = f32[{heads},{seq},1] broadcast(sum_r), dimensions={{0,1,2}}
  sum_r2 = {rows} reshape(sum_b)
  sum_bb = {scores} broadcast(sum_r2), dimensions={{0,1}}
  p = {scores} divide(e, sum_bb)
  v = f32[{heads},{seq},{dim}] parameter(2)
  ROOT out = f32[{heads},{seq},{dim}] dot(p, v), lhs_batch_dims={{0}}, lhs_contracting_dims={{2}}, rhs_batch_dims={{0}}, rhs_contracting_dims={{1}}
}}
"""


F32 = 4  # bytes per element

# Dots in generated loops: the BLAS emitter's choices (owned elsewhere) must not move these numbers.
OPTIONS = {"blas": False}


def _lowered(text: str) -> tuple[Module, Module]:
    """The module as codegen gets it without fusion, and with."""
    module = parse_module(text)
    return default_pipeline().run(module), optimizing_pipeline().run(module)


def _assert_fused_matches_interpreter(before: Module, after: Module, args: list[np.ndarray]) -> None:
    from hlojit.api import compile_hlo

    want = evaluate(before, args)
    got = compile_hlo(after, optimize=False)(*args)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * max(1.0, float(np.max(np.abs(want)))))


def _inputs(module: Module, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(p.shape.dims).astype(np.float32) for p in module.entry.parameters]


ROWS, COLS = 64, 128


@pytest.mark.parametrize("name, text, bytes_ideal", [
    # One pass over memory: read x (and the small scale/bias vectors), write the output.
    ("softmax", softmax_hlo(ROWS, COLS), 2 * ROWS * COLS * F32),
    ("layernorm", layernorm_hlo(ROWS, COLS), (2 * ROWS * COLS + 2 * COLS) * F32),
    ("gelu", gelu_hlo(ROWS, COLS), 2 * ROWS * COLS * F32),
])
def test_elementwise_and_row_workloads_are_one_kernel_and_one_pass(name, text, bytes_ideal):
    before, after = _lowered(text)
    assert kernel_count(after, OPTIONS) == 1
    assert bytes_moved(after, OPTIONS) == bytes_ideal
    assert kernel_count(before, OPTIONS) >= 6, f"{name}: the unfused module should launch a kernel per op"
    assert bytes_moved(before, OPTIONS) >= 3 * bytes_ideal
    _assert_fused_matches_interpreter(before, after, _inputs(before))


def test_mlp_is_two_dots_each_fused_with_its_epilogue():
    batch, d_in, d_hidden, d_out = 16, 32, 64, 8
    before, after = _lowered(mlp_hlo(batch, d_in, d_hidden, d_out))
    kernels = module_kernels(after, OPTIONS)
    # Each dot writes its fusion's output and its bias (+ relu) runs over that output in place.
    assert [k.what for k in kernels] == ["fusion(kOutput)", "fusion(kOutput)"]
    # Each reads its dot's operands and its bias once and writes its output once.
    expected = [
        (batch * d_in + d_in * d_hidden + d_hidden, batch * d_hidden),
        (batch * d_hidden + d_hidden * d_out + d_out, batch * d_out),
    ]
    assert [(k.bytes_read, k.bytes_written) for k in kernels] == [(r * F32, w * F32) for r, w in expected]
    assert kernel_count(before, OPTIONS) == 5
    _assert_fused_matches_interpreter(before, after, _inputs(before))


def test_attention_is_two_dots_around_one_row_softmax():
    heads, seq, dim = 2, 16, 8
    before, after = _lowered(attention_hlo(heads, seq, dim))
    kernels = module_kernels(after, OPTIONS)
    assert [k.what for k in kernels] == ["dot", "fusion(kInput)", "dot"]
    scores, vectors = heads * seq * seq, heads * seq * dim
    assert bytes_moved(after, OPTIONS) == F32 * (
        (2 * vectors + scores)  # q, k -> scores
        + 2 * scores  # scale + softmax: one pass
        + (scores + 2 * vectors)  # probabilities, v -> out
    )
    assert kernel_count(before, OPTIONS) == 9
    _assert_fused_matches_interpreter(before, after, _inputs(before))


# --- the cost model itself -------------------------------------------------------------------------------


def test_kernels_of_an_unfused_chain_and_of_a_copied_result():
    module = parse_module("""HloModule chain

ENTRY main {
  x = f32[4,8] parameter(0)
  y = f32[4,8] parameter(1)
  t = f32[8,4] transpose(x), dimensions={1,0}
  a = f32[8,4] exponential(t)
  b = f32[4,8] add(x, y)
  ROOT r = (f32[8,4], f32[4,8], f32[4,8]) tuple(a, b, y)
}
""")
    size = 4 * 8 * F32
    kernels = module_kernels(module, OPTIONS)
    # The transpose is lazy (read by the exponential's loop); `y` is copied into the third result.
    assert [(k.what, k.bytes_read, k.bytes_written) for k in kernels] == [
        ("exponential", size, size),
        ("add", 2 * size, size),
        ("copy", size, size),
    ]
    assert kernel_count(module, OPTIONS) == 3
    assert bytes_moved(module, OPTIONS) == 7 * size


def loop_hlo(body: str) -> str:
    """A while loop that runs three times over an f32[8]; `body` computes `w` from the state `v`."""
    return f"""HloModule loop

cond {{
  s = (s32[], f32[8]) parameter(0)
  i = s32[] get-tuple-element(s), index=0
  n = s32[] constant(3)
  ROOT lt = pred[] compare(i, n), direction=LT
}}

body {{
  s = (s32[], f32[8]) parameter(0)
  i = s32[] get-tuple-element(s), index=0
  one = s32[] constant(1)
  j = s32[] add(i, one)
  v = f32[8] get-tuple-element(s), index=1
{body}
  ROOT next = (s32[], f32[8]) tuple(j, w)
}}

ENTRY main {{
  x = f32[8] parameter(0)
  zero = s32[] constant(0)
  init = (s32[], f32[8]) tuple(zero, x)
  ROOT loop = (s32[], f32[8]) while(init), condition=cond, body=body
}}
"""


def test_kernels_inside_a_loop_body_are_counted_once():
    module = parse_module(loop_hlo("""  t = f32[8] tanh(v)
  w = f32[8] negate(t)"""))
    unfused = [k for k in module_kernels(module, OPTIONS) if k.scope != "entry"]
    fused = [k for k in module_kernels(optimizing_pipeline().run(module), OPTIONS) if k.scope != "entry"]
    assert [k.what for k in unfused if k.what in ("tanh", "negate")] == ["tanh", "negate"]
    assert "fusion(kLoop)" in [k.what for k in fused]
    assert len(fused) < len(unfused)


def cnn_hlo(batch: int, size: int, widths: tuple[int, int, int], classes: int) -> str:
    """The bench CNN as the ONNX front end lowers it: two (conv 3x3 + bias + ReLU + 2x2 max pool) layers,
    conv + bias + ReLU + global average pool, then a classifier dot with its bias."""
    lines = ["HloModule cnn", _REDUCERS, "ENTRY main {", f"  x0 = f32[{batch},3,{size},{size}] parameter(0)"]
    channels, number = 3, 1
    for layer, width in enumerate(widths):
        conv = f"f32[{batch},{width},{size},{size}]"
        x = f"x{layer}"
        lines += [
            f"  k{layer} = f32[{width},{channels},3,3] parameter({number})",
            f"  b{layer} = f32[{width}] parameter({number + 1})",
            f"  conv{layer} = {conv} convolution({x}, k{layer}), window={{size=3x3 pad=1_1x1_1}}, "
            "dim_labels=bf01_oi01->bf01",
            f"  bias{layer} = {conv} broadcast(b{layer}), dimensions={{1}}",
            f"  add{layer} = {conv} add(conv{layer}, bias{layer})",
            f"  zero{layer} = f32[] constant(0)",
            f"  zeros{layer} = {conv} broadcast(zero{layer}), dimensions={{}}",
            f"  relu{layer} = {conv} maximum(add{layer}, zeros{layer})",
        ]
        number += 2
        channels = width
        if layer == len(widths) - 1:
            break
        half = size // 2
        pooled = f"f32[{batch},{width},{half},{half}]"
        for row in (0, 1):
            for col in (0, 1):
                lines.append(f"  s{layer}{row}{col} = {pooled} slice(relu{layer}), slice={{[0:{batch}:1], "
                             f"[0:{width}:1], [{row}:{size - 1 + row}:2], [{col}:{size - 1 + col}:2]}}")
        lines += [
            f"  m{layer}a = {pooled} maximum(s{layer}00, s{layer}01)",
            f"  m{layer}b = {pooled} maximum(m{layer}a, s{layer}10)",
            f"  x{layer + 1} = {pooled} maximum(m{layer}b, s{layer}11)",
        ]
        size = half
    last = len(widths) - 1
    features = f"f32[{batch},{channels}]"
    lines += [
        f"  sum = {features} reduce(relu{last}, zero{last}), dimensions={{2,3}}, to_apply=add_f32",
        f"  scale = f32[] constant({1.0 / (size * size)})",
        f"  scales = {features} broadcast(scale), dimensions={{}}",
        f"  mean = {features} multiply(sum, scales)",
        f"  w = f32[{channels},{classes}] parameter({number})",
        f"  logits = f32[{batch},{classes}] dot(mean, w), lhs_contracting_dims={{1}}, rhs_contracting_dims={{0}}",
        f"  c = f32[{classes}] parameter({number + 1})",
        f"  cb = f32[{batch},{classes}] broadcast(c), dimensions={{1}}",
        f"  ROOT out = f32[{batch},{classes}] add(logits, cb)",
        "}",
    ]
    return "\n".join(lines) + "\n"


def test_cnn_convolutions_take_their_bias_relu_and_pool():
    # Feature counts below the Winograd lowering's thresholds: every convolution runs the direct
    # lowering, so the planner fuses each epilogue the emitter takes (test_convolution_epilogue_fusion.py
    # has the Winograd case, which stays unfused).
    before, after = _lowered(cnn_hlo(batch=2, size=16, widths=(4, 8, 8), classes=5))
    kernels = module_kernels(after, OPTIONS)
    # Each pooled layer is one kernel: the convolution applies bias and ReLU to its accumulators and
    # stores only the pool's maxima. The last convolution's ReLU feeds a reduction, which its epilogue
    # cannot take: it stays a convolution followed by the row fusion of bias, ReLU and mean.
    assert [k.what for k in kernels] == [
        "fusion(kOutput)", "fusion(kOutput)", "convolution", "fusion(kInput)", "fusion(kOutput)",
    ]
    before_kernels = module_kernels(before, OPTIONS)
    assert len(kernels) < len(before_kernels)
    # The pooled layers write only their pooled output: no full-size intermediate is stored.
    pooled_bytes = [2 * 4 * 8 * 8 * F32, 2 * 8 * 4 * 4 * F32]
    assert [k.bytes_written for k in kernels[:2]] == pooled_bytes
    _assert_fused_matches_interpreter(before, after, _inputs(before))
