"""Loop fusions that transpose or regroup: loop order, register tiles and output views.

* `fusion/access.py` finds the output dimension that reads the largest input
  contiguously; a loop fusion walks it innermost (`_loop_order`).
* When an output's minor dimension is another one, the loop moves T x T tiles
  transposed in registers (`_emit_transposing_tiles`): vector loads, a
  shuffle network, vector stores.
* A root reshape into a row-major output is written by looping over the
  reshape's operand through a view of the output (no div/mod per element).

Values are checked against the interpreter; the IR checks pin the structure.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hlojit.api import compile_hlo, lower
from hlojit.compiler.fusion.access import contiguous_root_dim, parameter_offset
from hlojit.ir.interpreter import evaluate
from hlojit.ir.parser import parse_module
from tests.conftest import flatten_result

# Attention's k^T: the projection output [s*b, 3*h*d] -> [b, h, d, s], scaled (as torch exports it).
K_TRANSPOSE = """HloModule k_transpose

fused {
  p = f32[256,384]{1,0} parameter(0)
  r = f32[64,4,3,4,32]{4,3,2,1,0} reshape(p)
  k = f32[64,4,1,4,32]{4,3,2,1,0} slice(r), slice={[0:64], [0:4], [1:2], [0:4], [0:32]}
  k2 = f32[64,4,4,32]{3,2,1,0} reshape(k)
  t = f32[4,4,32,64]{3,2,1,0} transpose(k2), dimensions={1,2,3,0}
  c = f32[] constant(0.42)
  cb = f32[4,4,32,64]{3,2,1,0} broadcast(c), dimensions={}
  ROOT m = f32[4,4,32,64]{3,2,1,0} multiply(t, cb)
}

ENTRY main {
  a = f32[256,384]{1,0} parameter(0)
  ROOT f = f32[4,4,32,64]{3,2,1,0} fusion(a), kind=kLoop, calls=fused
}
"""

# q row-major and k in the GEMM layout [b, h, d, s] from one read of the projection, bias added.
QK_MIXED_LAYOUTS = """HloModule qk

fused {
  p = f32[256,384]{1,0} parameter(0)
  b = f32[384]{0} parameter(1)
  bb = f32[256,384]{1,0} broadcast(b), dimensions={1}
  a = f32[256,384]{1,0} add(p, bb)
  r = f32[64,4,3,4,32]{4,3,2,1,0} reshape(a)
  q0 = f32[64,4,1,4,32]{4,3,2,1,0} slice(r), slice={[0:64], [0:4], [0:1], [0:4], [0:32]}
  k0 = f32[64,4,1,4,32]{4,3,2,1,0} slice(r), slice={[0:64], [0:4], [1:2], [0:4], [0:32]}
  q1 = f32[64,4,4,32]{3,2,1,0} reshape(q0)
  k1 = f32[64,4,4,32]{3,2,1,0} reshape(k0)
  q = f32[4,4,64,32]{3,2,1,0} transpose(q1), dimensions={1,2,0,3}
  k = f32[4,4,64,32]{2,3,1,0} transpose(k1), dimensions={1,2,0,3}
  ROOT t = (f32[4,4,64,32]{3,2,1,0}, f32[4,4,64,32]{2,3,1,0}) tuple(q, k)
}

ENTRY main {
  a = f32[256,384]{1,0} parameter(0)
  b = f32[384]{0} parameter(1)
  ROOT f = (f32[4,4,64,32]{3,2,1,0}, f32[4,4,64,32]{2,3,1,0}) fusion(a, b), kind=kLoop, calls=fused
}
"""

# Attention's head merge: [b, h, s, d] -> [s*b, h*d] (a transpose then a regrouping reshape).
HEAD_MERGE = """HloModule head_merge

fused {
  p = f32[4,4,64,32]{3,2,1,0} parameter(0)
  t = f32[64,4,4,32]{3,2,1,0} transpose(p), dimensions={2,0,1,3}
  ROOT r = f32[256,128]{1,0} reshape(t)
}

ENTRY main {
  a = f32[4,4,64,32]{3,2,1,0} parameter(0)
  ROOT f = f32[256,128]{1,0} fusion(a), kind=kLoop, calls=fused
}
"""


def _check_against_interpreter(text: str, seed: int = 0) -> None:
    module = parse_module(text)
    rng = np.random.default_rng(seed)
    args = [rng.standard_normal(s.dims).astype(s.dtype.numpy) for s in module.entry.parameter_shapes]
    want = flatten_result(evaluate(module, args))
    for optimize in (False, True):
        got = flatten_result(compile_hlo(text, optimize=optimize)(*args))
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def test_access_probe_follows_shape_ops_to_the_contiguous_dimension():
    fused = parse_module(K_TRANSPOSE).computation("fused")
    root = fused.root
    # Output [b, h, d, s]: d (dimension 2) walks the projection's row contiguously.
    assert contiguous_root_dim(fused, root.name, root.shape) == 2
    # Element (b=1, h=2, d=3, s=5) reads row s*4 + b = 21, column 128 (k) + h*32 + d = 195.
    assert parameter_offset(fused, root.name, "p", (1, 2, 3, 5)) == 21 * 384 + 195


def test_access_probe_keeps_the_output_order_when_it_is_contiguous():
    fused = parse_module(HEAD_MERGE).computation("fused")
    transpose = fused.by_name["t"]
    assert contiguous_root_dim(fused, "t", transpose.shape) == 3


def test_access_probe_gives_up_on_ops_it_does_not_follow():
    text = """HloModule pad
fused {
  p = f32[8,8]{1,0} parameter(0)
  z = f32[] constant(0)
  ROOT q = f32[8,10]{1,0} pad(p, z), padding=0_0x1_1
}
ENTRY main {
  a = f32[8,8]{1,0} parameter(0)
  ROOT f = f32[8,10]{1,0} fusion(a), kind=kLoop, calls=fused
}
"""
    fused = parse_module(text).computation("fused")
    assert contiguous_root_dim(fused, fused.root_name, fused.root.shape) is None


@pytest.mark.parametrize("text", [K_TRANSPOSE, QK_MIXED_LAYOUTS, HEAD_MERGE], ids=["k", "qk", "merge"])
def test_transposing_fusions_match_the_interpreter(text):
    _check_against_interpreter(text)


def test_transposing_fusion_moves_register_tiles():
    """A T x T tile: a loop keeps its rows, a shuffle network turns them into 16 column stores."""
    llvm_ir = lower(K_TRANSPOSE, optimize=False).llvm_ir
    assert "tile.d" in llvm_ir and "tile.row" in llvm_ir  # the tile loops and the loops over a tile
    assert llvm_ir.count("shufflevector <16 x float>") == 16 * 4  # log2(16) stages of 16 shuffles
    assert llvm_ir.count("store <16 x float>") == 16  # the columns, one vector store each


def test_mixed_layout_outputs_share_the_tiles():
    """q is stored as read, k transposed through the tile buffer, in one loop nest."""
    llvm_ir = lower(QK_MIXED_LAYOUTS, optimize=False).llvm_ir
    assert llvm_ir.count("store <16 x float>") == 16  # k's columns; q's elements go out in the row loop
    assert llvm_ir.count("shufflevector <16 x float>") == 16 * 4
    assert llvm_ir.count("tile.rows") >= 1 and "tile.col" in llvm_ir


@pytest.mark.parametrize("dtype,dims", [("f64", (8, 16)), ("f32", (12, 20)), ("s32", (32, 16)), ("f16", (16, 16))])
def test_transposes_of_other_types_and_ragged_sizes(dtype, dims):
    """f64 tiles are 8 x 8; sizes that are not tile multiples and f16 keep a plain loop (same values)."""
    rows, cols = dims
    text = f"""HloModule t
fused {{
  p = {dtype}[{rows},{cols}]{{1,0}} parameter(0)
  t = {dtype}[{cols},{rows}]{{1,0}} transpose(p), dimensions={{1,0}}
  ROOT n = {dtype}[{cols},{rows}]{{1,0}} negate(t)
}}
ENTRY main {{
  a = {dtype}[{rows},{cols}]{{1,0}} parameter(0)
  ROOT f = {dtype}[{cols},{rows}]{{1,0}} fusion(a), kind=kLoop, calls=fused
}}
"""
    module = parse_module(text)
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((rows, cols)) * 100).astype(module.entry.parameter_shapes[0].dtype.numpy)
    got = compile_hlo(text, optimize=False)(x)
    np.testing.assert_array_equal(got, -x.T)
    tiled = "tile.d" in lower(text, optimize=False).llvm_ir
    assert tiled == (dtype in ("f64", "s32"))


def test_root_reshape_loops_over_its_operand_without_div_or_mod():
    llvm_ir = lower(HEAD_MERGE, optimize=False).llvm_ir
    assert "udiv" not in llvm_ir and "urem" not in llvm_ir
    assert "fusion.d3" in llvm_ir  # four loops: the transpose's dimensions


@settings(max_examples=12, deadline=None)
@given(
    dims=st.lists(st.sampled_from([1, 3, 8, 16, 32]), min_size=2, max_size=4),
    data=st.data(),
    dtype=st.sampled_from(["f32", "f64"]),
)
def test_random_transposes_with_random_layouts_match_numpy(dims, data, dtype):
    """A transpose (plus an elementwise op) into a random output layout: tiles, reordered loops or
    the plain loop, whichever applies, give numpy's values."""
    rank = len(dims)
    permutation = data.draw(st.permutations(range(rank)))
    layout = data.draw(st.permutations(range(rank)))
    out_dims = [dims[p] for p in permutation]
    operand = f"{dtype}[{','.join(map(str, dims))}]{{{','.join(map(str, reversed(range(rank))))}}}"
    result = f"{dtype}[{','.join(map(str, out_dims))}]{{{','.join(map(str, layout))}}}"
    text = f"""HloModule random_transpose, entry_computation_layout={{({operand})->{result}}}
fused {{
  p = {operand} parameter(0)
  t = {result} transpose(p), dimensions={{{','.join(map(str, permutation))}}}
  ROOT n = {result} negate(t)
}}
ENTRY main {{
  a = {operand} parameter(0)
  ROOT f = {result} fusion(a), kind=kLoop, calls=fused
}}
"""
    x = np.random.default_rng(0).standard_normal(dims).astype(np.float32 if dtype == "f32" else np.float64)
    got = compile_hlo(text, optimize=False)(x)
    np.testing.assert_array_equal(got, -np.transpose(x, permutation))


def test_a_broadcast_input_does_not_reorder_the_loop():
    """A small input broadcast along the output's rows does not make the loop walk the output across rows."""
    text = """HloModule column_broadcast
fused {
  p = f32[64]{0} parameter(0)
  ROOT b = f32[64,48]{1,0} broadcast(p), dimensions={0}
}
ENTRY main {
  a = f32[64]{0} parameter(0)
  ROOT f = f32[64,48]{1,0} fusion(a), kind=kLoop, calls=fused
}
"""
    fused = parse_module(text).computation("fused")
    assert contiguous_root_dim(fused, "b", fused.root.shape) is None
    assert "tile.d" not in lower(text, optimize=False).llvm_ir
    x = np.arange(64, dtype=np.float32)
    np.testing.assert_array_equal(compile_hlo(text, optimize=False)(x), np.broadcast_to(x[:, None], (64, 48)))
