"""The direct (register-tile, implicit-GEMM) convolution lowering against the interpreter and numpy.

`direct_everywhere` drops the size threshold so small cases take the lowering; every
test asserts that it did (the register tile's k loop is named ``conv.mk`` in the IR).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hlojit.api import compile_hlo
from hlojit.compiler.codegen.ops import convolution, direct_convolution
from hlojit.compiler.codegen.ops.direct_convolution import Positions, direct_plan
from hlojit.ir.interpreter import evaluate
from hlojit.ir.parser import parse_module
from tests.compiler.test_codegen_convolution import Conv, _nonfinite_kernel, assert_close, numpy_conv2d_nchw

DIRECT_MARKER = "conv.mk"


@pytest.fixture
def direct_everywhere(monkeypatch):
    monkeypatch.setattr(direct_convolution, "DIRECT_MIN_MACS", 0)


def plan_of(case: Conv):
    module = parse_module(case.text())
    root = module.entry.root
    lhs, rhs = (module.entry.by_name[name].shape for name in root.operands)
    return direct_plan(convolution.conv_geometry(lhs, rhs, root.shape, root.attrs, root.name))


def compile_direct(text: str, **options):
    executable = compile_hlo(text, **options)
    assert DIRECT_MARKER in executable.llvm_ir, "expected the direct convolution lowering"
    return executable


def check_direct(case: Conv, **options):
    text = case.text()
    x, k = case.inputs()
    got = compile_direct(text, **options)(x, k)
    want = evaluate(parse_module(text), [x, k])
    assert_close(got, want, case.dtype)
    return x, k, got


def nchw(**kw) -> Conv:
    return Conv(**{"sizes": (3, 3), "pads": ((1, 1), (1, 1)), **kw})


# Geometries chosen to reach every position layout, tile tail and table path.
DIRECT_CASES = [
    nchw(spatial=(5, 32), in_features=3, out_features=16),              # rows: 2 full vectors a row
    nchw(spatial=(4, 16), in_features=4, out_features=7),               # rows: 1 vector a row, 7 = 6 + 1 rows
    nchw(spatial=(5, 8), in_features=5, out_features=9),                # paired, odd height: masked last half
    nchw(spatial=(8, 8), in_features=2, out_features=12, dtype="f64"),  # f64: 8-wide rows fill a vector
    nchw(spatial=(4, 4), dtype="f64", out_features=5),                  # f64 paired (4 = half of 8 lanes)
    nchw(spatial=(7, 9), in_features=3, out_features=5),                # flat, rows cross vectors
    nchw(spatial=(3, 20), out_features=3),                              # rows with a masked last vector
    nchw(spatial=(6, 5), sizes=(2, 3), pads=((0, 1), (2, 0))),          # asymmetric padding
    nchw(spatial=(6, 7), pads=((3, 2), (4, 3))),                        # padding wider than the window
    nchw(spatial=(7, 9), pads=((-1, 0), (-2, 1))),                      # negative padding crops
    nchw(spatial=(9, 11), pads=((0, 0), (0, 0))),                       # no padding
    nchw(spatial=(9, 10), rhs_dilate=(2, 3), pads=((2, 2), (3, 1))),    # atrous
    nchw(spatial=(6, 7), reversal=(1, 0)),                              # window reversal
    nchw(spatial=(6, 7), sizes=(1, 1), pads=None),                      # 1x1 kernel
    nchw(spatial=(6, 7), sizes=(5, 2), pads=((2, 2), (0, 1))),
    Conv(labels="bf0_oi0->bf0", spatial=(40,), sizes=(5,), pads=((2, 1),), out_features=6),  # 1-D
    Conv(labels="bf01_oi10->bf10", spatial=(6, 9), sizes=(3, 2), pads=((1, 1), (0, 1))),     # x = spatial 0
    Conv(labels="b01f_01io->bf01", spatial=(6, 9), pads=((1, 1), (1, 1)), sizes=(3, 3)),     # NHWC input
    Conv(labels="bf01_io01->bf01", spatial=(6, 9), pads=((1, 1), (1, 1)), sizes=(3, 3)),     # kernel [K, O]
    nchw(spatial=(6, 9), layouts=((1, 3, 0, 2), (0, 2, 3, 1), None)),   # permuted input and kernel layouts
    nchw(spatial=(6, 9), layouts=(None, None, (3, 2, 0, 1))),           # output: x minor, then y, b, f
    # Features minor (NHWC): tile rows are positions of one output row, vectors are output features.
    Conv(labels="b01f_01io->b01f", spatial=(6, 9), sizes=(3, 3), pads=((1, 1), (1, 1)), out_features=20),
    Conv(labels="b01f_01io->b01f", spatial=(5, 30), sizes=(3, 3), pads=((1, 1), (1, 1)), out_features=70),
    Conv(labels="b01f_01io->b01f", spatial=(7, 5), sizes=(2, 3), pads=((0, 2), (-1, 1)), dtype="f64",
         rhs_dilate=(2, 1), reversal=(0, 1)),
    Conv(labels="bf01_01io->b01f", spatial=(6, 9), sizes=(3, 3), pads=((1, 1), (1, 1))),  # NCHW input
    Conv(labels="b01f_0i1o->b10f", spatial=(6, 9), sizes=(3, 3), pads=((1, 1), (1, 1))),  # x = spatial 0
    Conv(labels="b0f_0io->b0f", spatial=(30,), sizes=(4,), pads=((1, 2),), out_features=3),
]


@pytest.mark.parametrize("case", DIRECT_CASES)
def test_direct_lowering(case, direct_everywhere):
    check_direct(case)


def test_the_cases_reach_every_position_layout(direct_everywhere):
    layouts = {plan_of(case).positions for case in DIRECT_CASES}
    assert layouts == set(Positions)


def test_matches_numpy_definition(direct_everywhere):
    case = nchw(batch=2, in_features=3, out_features=5, spatial=(7, 6), dtype="f64", pads=((1, 2), (2, 1)))
    x, k, got = check_direct(case)
    np.testing.assert_allclose(got, numpy_conv2d_nchw(x, k, 1, ((1, 2), (2, 1))), rtol=1e-12, atol=1e-12)


def test_images_in_chunks(direct_everywhere, monkeypatch):
    """A small scratch budget pads one or two images at a time (a ragged last chunk included)."""
    case = nchw(batch=5, in_features=3, out_features=8, spatial=(6, 7))
    image_bytes = plan_of(case).image_elements * 4
    for images in (1, 2):
        monkeypatch.setattr(direct_convolution, "PADDED_BUDGET_BYTES", images * image_bytes)
        assert plan_of(case).chunk_images == images
        check_direct(case)


@pytest.mark.parametrize("case", [
    nchw(batch=3, in_features=4, out_features=13, spatial=(9, 16)),
    nchw(batch=2, in_features=3, out_features=20, spatial=(8, 8)),
    nchw(batch=3, in_features=2, out_features=6, spatial=(7, 9), dtype="f64"),
])
def test_identical_for_every_thread_count(case, direct_everywhere):
    """Blocks of (image, feature range) split over threads; each output element sums in the same order."""
    text = case.text()
    x, k = case.inputs()
    results = [compile_direct(text, num_threads=threads, parallel_min_work_ns=0)(x, k) for threads in (1, 2, 4)]
    assert "hlojit.parallel_for" in compile_direct(text, num_threads=4, parallel_min_work_ns=0).llvm_ir
    for result in results[1:]:
        assert np.array_equal(result, results[0])
    assert_close(results[0], evaluate(parse_module(text), [x, k]), case.dtype)


@pytest.mark.parametrize("case", [nchw(spatial=(6, 7)), nchw(spatial=(5, 8), rhs_dilate=(1, 2), dtype="f64")])
def test_nonfinite_kernel_over_padding_is_nan_as_in_xla(case, direct_everywhere):
    """Padding is real zeros in the padded copy, so ``0 * inf`` over padding is NaN as XLA defines it."""
    text = case.text()
    x, k = case.inputs()
    k = _nonfinite_kernel(k)
    want = evaluate(parse_module(text), [x, k])
    got = compile_direct(text)(x, k)
    assert np.isnan(want).any() and np.array_equal(np.isnan(got), np.isnan(want))
    assert_close(got, want, case.dtype)


def test_chosen_by_shape():
    """With the default threshold: the bench CNN's convolutions (and tiny ones) go direct; others keep theirs."""
    for spatial, features, outputs in (((32, 32), 3, 16), ((16, 16), 16, 32), ((8, 8), 32, 64)):
        case = nchw(batch=8, spatial=spatial, in_features=features, out_features=outputs)
        assert plan_of(case) is not None
    assert plan_of(nchw(batch=1, in_features=1, out_features=1, spatial=(4, 4))) is not None  # tiny too
    big = dict(batch=2, in_features=8, out_features=8, spatial=(16, 16))
    for other in (dict(strides=(2, 2)), dict(lhs_dilate=(2, 1)), dict(feature_groups=2),
                  dict(dtype="f16"), dict(dtype="s32"), dict(kernel_dtype="f64"), dict(labels="bf01_oi01->b01f")):
        assert plan_of(nchw(**{**big, **other})) is None, other


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_random_direct_convolutions(data):
    """Random geometries the lowering takes: stride 1, any padding, dilation, reversal, layouts."""
    s = st
    spatial_rank = data.draw(s.integers(1, 2))
    rank = spatial_rank + 2
    rhs_perm = data.draw(s.permutations(["o", "i"] + [str(i) for i in range(spatial_rank)]))
    lhs_perm = data.draw(s.permutations(["b", "f"] + [str(i) for i in range(spatial_rank)]))
    out_spatial = [str(i) for i in range(spatial_rank)]
    features_minor = data.draw(s.booleans())
    if not features_minor:  # spatial minor (NCHW-like)
        out_perm = data.draw(s.permutations(["b", "f"])) + data.draw(s.permutations(out_spatial))
    else:  # features minor (NHWC-like): B vectors are kernel rows, so the kernel's o is minor too
        out_perm = data.draw(s.permutations(["b"] + out_spatial)) + ["f"]
        rhs_perm = [d for d in rhs_perm if d != "o"] + ["o"]
    labels = f"{''.join(lhs_perm)}_{''.join(rhs_perm)}->{''.join(out_perm)}"
    sizes = tuple(data.draw(s.integers(1, 4)) for _ in range(spatial_rank))
    case = Conv(
        labels=labels,
        batch=data.draw(s.integers(1, 3)),
        in_features=data.draw(s.integers(1, 5)),
        out_features=data.draw(s.integers(1, 40)),
        spatial=tuple(data.draw(s.integers(3, 19)) for _ in range(spatial_rank)),
        sizes=sizes,
        pads=tuple((data.draw(s.integers(-1, 3)), data.draw(s.integers(-1, 3))) for _ in range(spatial_rank)),
        rhs_dilate=tuple(data.draw(s.integers(1, 2)) for _ in range(spatial_rank)),
        reversal=tuple(int(data.draw(s.booleans())) for _ in range(spatial_rank)),
        dtype=data.draw(s.sampled_from(["f32", "f64"])),
        layouts=(data.draw(s.one_of(s.none(), s.permutations(range(rank)))),
                 None if features_minor else data.draw(s.one_of(s.none(), s.permutations(range(rank)))), None),
    )
    if any(d < 1 for d in case.output_spatial()):
        case.pads = None
    if any(d < 1 for d in case.output_spatial()):
        return
    direct_convolution.DIRECT_MIN_MACS, saved = 0, direct_convolution.DIRECT_MIN_MACS
    try:
        assert plan_of(case) is not None
        check_direct(case)
    finally:
        direct_convolution.DIRECT_MIN_MACS = saved


# --- convolution epilogues (kOutput fusions headed by a convolution) ----------------------------------


def epilogue_module(steps: str, dtype: str = "f32", spatial=(8, 8), scale: bool = False, stride: int = 1) -> str:
    """A kOutput fusion of an NCHW 3x3 convolution ``c`` (3 -> 5 features, batch 2), its bias
    broadcast ``bb`` and `steps` (the last is the root); `scale` adds a scalar parameter ``s``.

    In `steps`, ``Y`` stands for the output shape.
    """
    h, w = spatial
    oh, ow = -(-h // stride), -(-w // stride)
    x, k, y = f"{dtype}[2,3,{h},{w}]", f"{dtype}[5,3,3,3]", f"{dtype}[2,5,{oh},{ow}]"
    window = f"size=3x3 pad=1_1x1_1" + (f" stride={stride}x{stride}" if stride > 1 else "")
    scale_parameter = f"s = {dtype}[] parameter(3)" if scale else ""
    return f"""HloModule m
fused {{
  x = {x} parameter(0)
  w = {k} parameter(1)
  bias = {dtype}[5] parameter(2)
  {scale_parameter}
  c = {y} convolution(x, w), window={{{window}}}, dim_labels=bf01_oi01->bf01
  bb = {y} broadcast(bias), dimensions={{1}}
  {steps.replace("Y", y)}
}}
ENTRY e {{
  x = {x} parameter(0)
  w = {k} parameter(1)
  bias = {dtype}[5] parameter(2)
  {scale_parameter}
  ROOT f = {y} fusion(x, w, bias{", s" if scale else ""}), kind=kOutput, calls=fused
}}"""


RELU = """z = f32[] constant(0)
  zb = Y broadcast(z), dimensions={}
  a = Y add(c, bb)
  ROOT r = Y maximum(a, zb)"""

EPILOGUE_CASES = {
    "bias relu": epilogue_module(RELU),
    "bias relu f64": epilogue_module(RELU.replace("f32", "f64"), dtype="f64"),
    "bias minus, rows of 16": epilogue_module("ROOT r = Y subtract(bb, c)", spatial=(16, 16)),
    "scale, clamp, per-feature constant": epilogue_module("""sb = Y broadcast(s), dimensions={}
  m = Y multiply(sb, c)
  six = f32[] constant(6)
  sixb = Y broadcast(six), dimensions={}
  lo = Y minimum(m, sixb)
  shift = f32[5] constant({1, -2, 0.5, 3, -1})
  shiftb = Y broadcast(shift), dimensions={1}
  ROOT r = Y add(lo, shiftb)""", spatial=(9, 11), scale=True),
}


def random_arguments(text: str) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.standard_normal(p.shape.dims).astype(p.shape.dtype.numpy)
            for p in parse_module(text).entry.parameters]


@pytest.mark.parametrize("name", list(EPILOGUE_CASES))
def test_convolution_epilogue_fusion(name):
    """The chain runs on the accumulators, on any number of threads, and matches the interpreter."""
    text = EPILOGUE_CASES[name]
    arguments = random_arguments(text)
    results = [compile_direct(text, optimize=False, num_threads=threads, parallel_min_work_ns=0)(*arguments)
               for threads in (1, 2)]
    assert np.array_equal(results[0], results[1])
    want = evaluate(parse_module(text), arguments)
    np.testing.assert_allclose(results[0], want, rtol=1e-5, atol=1e-5)


def test_convolution_epilogue_refusals():
    """What the fusion planner must not form (the emitter raises on it)."""
    from hlojit.compiler.codegen.ops.convolution_epilogue import convolution_epilogue

    def reason(text: str) -> str:
        found = convolution_epilogue(parse_module(text).computation("fused"))
        assert isinstance(found, str)
        return found

    assert "per-feature" in reason(epilogue_module("""n = Y negate(bb)
  ROOT r = Y add(c, n)"""))
    assert "not an elementwise epilogue step" in reason(epilogue_module("ROOT r = Y add(c, c)"))
    assert "not a direct convolution" in reason(epilogue_module(RELU, stride=2))
    assert "readers" in reason(epilogue_module("""a = Y add(c, bb)
  m = Y multiply(a, bb)
  n = Y negate(a)
  ROOT r = Y add(m, n)"""))
    assert not isinstance(convolution_epilogue(parse_module(EPILOGUE_CASES["bias relu"]).computation("fused")), str)


def pooled_module(spatial: tuple[int, int], features: int = 7, dtype: str = "f32", relu: str = "0",
                  corners=((0, 0), (0, 1), (1, 0), (1, 1))) -> str:
    """A kOutput fusion of conv (3 -> `features`, 3x3 pad 1) + bias + max(., relu) + a 2x2 stride-2 max
    pool written as four slices and maximums (the ONNX/torch front ends' MaxPool)."""
    h, w = spatial
    y, p = f"{dtype}[2,{features},{h},{w}]", f"{dtype}[2,{features},{h // 2},{w // 2}]"
    slices = []
    for i, (dy, dx) in enumerate(corners):
        slices.append(f"s{i} = {p} slice(m), slice={{[0:2:1], [0:{features}:1], [{dy}:{dy + h - 1}:2], "
                      f"[{dx}:{dx + w - 1}:2]}}")
    slice_text = "\n  ".join(slices)
    body = f"""bias = {dtype}[{features}] parameter(0)
  x = {dtype}[2,3,{h},{w}] parameter(1)
  w = {dtype}[{features},3,3,3] parameter(2)"""
    return f"""HloModule m
fused {{
  {body}
  c = {y} convolution(x, w), window={{size=3x3 pad=1_1x1_1}}, dim_labels=bf01_oi01->bf01
  bb = {y} broadcast(bias), dimensions={{1}}
  a = {y} add(c, bb)
  z = {dtype}[] constant({relu})
  zb = {y} broadcast(z), dimensions={{}}
  m = {y} maximum(a, zb)
  {slice_text}
  m1 = {p} maximum(s0, s1)
  m2 = {p} maximum(s2, m1)
  ROOT m3 = {p} maximum(m2, s3)
}}
ENTRY e {{
  {body}
  ROOT f = {p} fusion(bias, x, w), kind=kOutput, calls=fused
}}"""


@pytest.mark.parametrize("spatial, dtype", [
    ((6, 32), "f32"),   # rows of two vectors: a tile is one row pair (16-lane maxima)
    ((4, 16), "f32"),   # rows of one vector: half-vector maxima
    ((8, 8), "f32"),    # paired rows: quarter-vector maxima
    ((4, 48), "f32"),   # three vectors a row
    ((6, 8), "f64"),    # f64 rows of one vector
    ((4, 4), "f64"),    # f64 paired rows
])
def test_convolution_epilogue_with_max_pool(spatial, dtype):
    """The tiles store only the 2x2 maxima; bit-identical to the unfused module, and on 1 or 2 threads."""
    text = pooled_module(spatial, dtype=dtype)
    arguments = random_arguments(text)
    fused = [compile_direct(text, optimize=False, num_threads=threads, parallel_min_work_ns=0)(*arguments)
             for threads in (1, 2)]
    unfused = compile_hlo(text.split("ENTRY")[0].replace("fused {", "ENTRY e {"))  # the fused computation alone
    assert np.array_equal(fused[0], fused[1])
    assert np.array_equal(fused[0], unfused(*arguments))
    np.testing.assert_allclose(fused[0], evaluate(parse_module(text), arguments), rtol=1e-5, atol=1e-5)


def test_convolution_epilogue_nan_and_signed_zero_like_the_unfused_pool():
    """maximum(x, -0) takes the general IEEE path, NaN inputs propagate through ReLU and pool."""
    for relu in ("0", "-0", "0.25"):
        text = pooled_module((4, 16), relu=relu)
        arguments = random_arguments(text)
        arguments[1][0, 0, 1, 3] = np.nan
        arguments[0][2] = -np.inf  # feature 2: every pre-activation -inf, clamped to the constant
        got = compile_direct(text, optimize=False)(*arguments)
        unfused = compile_hlo(text.split("ENTRY")[0].replace("fused {", "ENTRY e {"))(*arguments)
        assert np.array_equal(got.view(np.uint32), unfused.view(np.uint32)), relu
        assert np.isnan(got).any()


def test_pooled_epilogue_refusals():
    from hlojit.compiler.codegen.ops.convolution_epilogue import convolution_epilogue

    def reason(text: str) -> str:
        found = convolution_epilogue(parse_module(text).computation("fused"))
        assert isinstance(found, str)
        return found

    assert "does not fit" in reason(pooled_module((6, 10)))                  # flat rows: pairs split tiles
    assert "four corners" in reason(pooled_module((4, 16), corners=((0, 0), (0, 1), (1, 0), (0, 0))))


def test_candidate_refusal_for_the_fusion_planner():
    """The planner's view: member instructions of the entry computation, outside operands as inputs."""
    from hlojit.compiler.codegen.ops.convolution_epilogue import candidate_refusal

    entry = parse_module(pooled_module((4, 16)).split("ENTRY")[0].replace("fused {", "ENTRY e {")).entry
    members = [i for i in entry.instructions if i.opcode.text != "parameter"]

    def shape_of(name: str):
        return entry.by_name[name].shape

    assert candidate_refusal(members, entry.root_name, shape_of) is None
    without_pool = [m for m in members if m.name in ("c", "bb", "a", "z", "zb", "m")]
    assert candidate_refusal(without_pool, "m", shape_of) is None
    assert "convolutions, not one" in candidate_refusal([m for m in members if m.name != "c"], "m3", shape_of)
    # The convolution's input computed inside the fusion: the direct lowering pads it from memory.
    negated = parse_module(pooled_module((4, 16)).split("ENTRY")[0].replace("fused {", "ENTRY e {").replace(
        "c = f32[2,7,4,16] convolution(x, w)", "xn = f32[2,3,4,16] negate(x)\n  c = f32[2,7,4,16] convolution(xn, w)"))
    inner = [i for i in negated.entry.instructions if i.opcode.text != "parameter"]
    assert "reads computed values" in candidate_refusal(inner, "m3", lambda n: negated.entry.by_name[n].shape)
