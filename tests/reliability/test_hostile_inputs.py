"""Hostile and bad inputs: each gets a clear error (naming the argument, what was expected and what was
got) or a correct result, and hlojit keeps working afterwards (every test calls again with good input).

Decisions documented here (and in the README's "Reliability" section):
- An `Executable` takes numpy arrays of exactly its parameters' dtypes and dims (or Python scalars that
  convert exactly, for scalar parameters); lists are rejected, not converted.
- `@hlojit.jit` treats lists, tuples and dicts as pytrees (containers of arguments), as JAX does: a nested
  list of numbers is a tree of Python scalars, not an array; using it as an array raises a TypeError that
  names the argument. Pass `np.asarray(...)` for an array.
- Any memory layout is accepted and read correctly: non-contiguous, negative strides, read-only,
  misaligned and zero-stride (broadcast) views; arguments may alias each other.
- Integer division by zero is defined (x / 0 = -1, x % 0 = x, as XLA); under `@jit`, numpy's own results
  (0 for both) are what `jit` must give.
"""

from __future__ import annotations

import numpy as np
import pytest

import hlojit
from hlojit.api import compile_hlo
from hlojit.compiler.codegen.options import CodegenOptions
from hlojit.ir.errors import HloParseError, HloVerifyError
from hlojit.ir.interpreter import WhileIterationLimitError, evaluate
from hlojit.ir.parser import parse_module
from hlojit.runtime.executable import ExecutionError

ADD = """HloModule add_two
ENTRY e { x = f32[4,3] parameter(0)  y = f32[4,3] parameter(1)  ROOT r = f32[4,3] add(x, y) }"""

X = np.arange(12, dtype=np.float32).reshape(4, 3)
Y = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)


@pytest.fixture(scope="module")
def add_two():
    return compile_hlo(ADD)


def _still_works(executable) -> None:
    np.testing.assert_array_equal(executable(X, Y), X + Y)


# --- arguments to an Executable -------------------------------------------------------------------


@pytest.mark.parametrize("bad, error, expected_words", [
    (X.astype(np.float64), TypeError, ["parameter 0", "x", "f32[4,3]", "float64"]),
    (X.astype(np.int32), TypeError, ["parameter 0", "f32[4,3]", "int32"]),
    (X.T, ValueError, ["parameter 0", "f32[4,3]", "(3, 4)"]),
    (X.ravel(), ValueError, ["parameter 0", "f32[4,3]", "(12,)"]),
    (X[None], ValueError, ["parameter 0", "(1, 4, 3)"]),
    (None, TypeError, ["parameter 0", "f32[4,3]", "NoneType"]),
    ("abc", TypeError, ["parameter 0", "str"]),
    (X.tolist(), TypeError, ["parameter 0", "numpy array", "list"]),
    (X.astype(object), TypeError, ["parameter 0", "object"]),
    (np.zeros((0, 3), np.float32), ValueError, ["parameter 0", "(0, 3)"]),
    (np.array(1.0, np.float32), ValueError, ["parameter 0", "f32[4,3]", "shape ()"]),
    (np.float32(1), ValueError, ["parameter 0", "f32[4,3]", "scalar"]),
    (1.0, TypeError, ["parameter 0", "f32[4,3]", "float"]),
    (np.zeros((4, 3), [("a", "f4")]), TypeError, ["parameter 0", "f32[4,3]", "('a', '<f4')"]),
    (memoryview(X), TypeError, ["parameter 0", "numpy array", "memoryview"]),
])
def test_executable_rejects_bad_arguments_with_a_clear_error(add_two, bad, error, expected_words):
    with pytest.raises(error) as raised:
        add_two(bad, Y)
    message = str(raised.value)
    for word in expected_words:
        assert word in message, f"{word!r} not in {message!r}"
    _still_works(add_two)


def test_executable_argument_count(add_two):
    with pytest.raises(TypeError, match=r"takes 2 arguments \(x, y\), got 1"):
        add_two(X)
    with pytest.raises(TypeError, match="got 3"):
        add_two(X, Y, Y)
    _still_works(add_two)


def _misaligned(values: np.ndarray) -> np.ndarray:
    """The same values in a float32 view starting at byte offset 1 of a uint8 buffer."""
    raw = np.zeros(values.nbytes + 1, np.uint8)
    view = raw[1:].view(values.dtype).reshape(values.shape)
    view[...] = values
    assert view.ctypes.data % values.dtype.itemsize != 0
    return view


def _read_only(values: np.ndarray) -> np.ndarray:
    copy = values.copy()
    copy.flags.writeable = False
    return copy


@pytest.mark.parametrize("make", [
    pytest.param(lambda a: np.asfortranarray(a), id="fortran"),
    pytest.param(lambda a: np.ascontiguousarray(a[::-1])[::-1], id="negative-stride"),
    pytest.param(lambda a: np.repeat(a, 2, axis=1)[:, ::2], id="strided"),
    pytest.param(lambda a: np.ascontiguousarray(a[:, ::-1])[:, ::-1], id="negative-inner-stride"),
    pytest.param(_read_only, id="read-only"),
    pytest.param(_misaligned, id="misaligned"),
])
def test_executable_reads_any_memory_layout_correctly(add_two, make):
    x = make(X)
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(add_two(x, Y), X + Y)
    np.testing.assert_array_equal(add_two(Y, x), X + Y)
    np.testing.assert_array_equal(x, X)  # inputs are never written


def test_executable_zero_stride_and_aliased_arguments(add_two):
    ones = np.broadcast_to(np.float32(1), (4, 3))
    np.testing.assert_array_equal(add_two(ones, X), X + 1)
    np.testing.assert_array_equal(add_two(X, X), X + X)  # the same buffer twice
    result = add_two(X, Y)
    np.testing.assert_array_equal(add_two(result, result), 2 * (X + Y))
    np.testing.assert_array_equal(result, X + Y)


def test_executable_results_never_alias_inputs_or_each_other():
    exe = compile_hlo("""HloModule passthrough
ENTRY e { x = f32[3] parameter(0)  ROOT t = (f32[3], f32[3]) tuple(x, x) }""")
    x = np.arange(3, dtype=np.float32)
    a, b = exe(x)
    a[0] = 99
    assert b[0] == 0 and x[0] == 0


def test_donated_parameter_passed_twice_gives_the_right_result():
    """input_output_alias lets the result reuse parameter 0's buffer; passing the same array as the donated
    parameter and as another one must still read the original values everywhere."""
    exe = compile_hlo("""HloModule donate, input_output_alias={ {}: (0, {}, may-alias) }
ENTRY e { x = f32[4] parameter(0)  y = f32[4] parameter(1)  r = f32[4] reverse(y), dimensions={0}
  ROOT a = f32[4] add(x, r) }""")
    x = np.arange(4, dtype=np.float32)
    expected = x + x[::-1]
    np.testing.assert_array_equal(exe(x, x), expected)
    expected = x + 1
    result = exe(x, np.ones(4, np.float32))
    np.testing.assert_array_equal(result, expected)
    assert result is x, "the donated array holds the result"


def test_scalar_and_zero_size_parameters():
    scalar = compile_hlo("""HloModule s
ENTRY e { x = f32[] parameter(0)  ROOT r = f32[] multiply(x, x) }""")
    for value in (np.float32(3), np.array(3, np.float32), 3.0, 3):
        assert scalar(value) == 9
    for bad in (True, np.float64(3), np.array([3], np.float32), "3", None, np.zeros((0,), np.float32)):
        with pytest.raises((TypeError, ValueError), match=r"parameter 0 \(x\): expected f32\[\]"):
            scalar(bad)
        assert scalar(np.float32(2)) == 4  # still works
    empty = compile_hlo("""HloModule z
add { a = f32[] parameter(0)  b = f32[] parameter(1)  ROOT s = f32[] add(a, b) }
ENTRY e { x = f32[0,3] parameter(0)  c = f32[] constant(0)
  ROOT r = f32[3] reduce(x, c), dimensions={0}, to_apply=add }""")
    np.testing.assert_array_equal(empty(np.zeros((0, 3), np.float32)), np.zeros(3, np.float32))


# --- arguments to a jitted function ---------------------------------------------------------------


@hlojit.jit
def _scale_add(x, y):
    return x * 2 + y


def _jit_still_works():
    np.testing.assert_array_equal(_scale_add(X, Y), X * 2 + Y)


@pytest.mark.parametrize("bad, error, expected_words", [
    ("abc", Exception, ["'x'", "str"]),
    (X.astype(object), TypeError, ["'x'", "object"]),
    (X.astype(np.complex64), TypeError, ["'x'", "complex64"]),
    (np.zeros(3, "datetime64[s]"), TypeError, ["'x'", "datetime64"]),
    (X.tolist(), TypeError, ["x[0][0]"]),
])
def test_jit_rejects_bad_arguments_with_a_clear_error(bad, error, expected_words):
    with pytest.raises(error) as raised:
        _scale_add(bad, Y)
    message = str(raised.value)
    for word in expected_words:
        assert word in message, f"{word!r} not in {message!r}"
    _jit_still_works()


@pytest.mark.parametrize("make", [
    pytest.param(lambda a: np.asfortranarray(a), id="fortran"),
    pytest.param(lambda a: a[::-1], id="negative-stride"),
    pytest.param(lambda a: np.repeat(a, 2, axis=1)[:, ::2], id="strided"),
    pytest.param(_read_only, id="read-only"),
    pytest.param(_misaligned, id="misaligned"),
    pytest.param(lambda a: np.broadcast_to(a[:1], a.shape), id="zero-stride"),
])
def test_jit_reads_any_memory_layout_correctly(make):
    x = make(X)
    np.testing.assert_array_equal(_scale_add(x, Y), np.asarray(x) * 2 + Y)
    np.testing.assert_array_equal(_scale_add(Y, x), Y * 2 + np.asarray(x))


def test_jit_zero_d_zero_size_and_aliased_arguments():
    np.testing.assert_array_equal(_scale_add(np.float32(3), Y), 3 * 2 + Y)
    np.testing.assert_array_equal(_scale_add(np.array(3, np.float32), Y), 3 * 2 + Y)
    empty = np.zeros((0, 3), np.float32)
    assert _scale_add(empty, empty).shape == (0, 3)
    np.testing.assert_array_equal(_scale_add(X, X), X * 3)
    _jit_still_works()


def test_jit_with_donated_argument_aliasing_another():
    @hlojit.jit
    def step(x, y):
        return x + y

    donating = hlojit.jit(step.fun if hasattr(step, "fun") else step, donate_argnums=(0,))
    x = X.copy()
    np.testing.assert_array_equal(donating(x, x), X + X)
    np.testing.assert_array_equal(donating(X.copy(), Y), X + Y)


def test_jit_none_argument_error_names_the_argument():
    """None is an empty pytree (as in JAX): the function sees None, and the error says which argument."""
    with pytest.raises(TypeError) as raised:
        _scale_add(None, Y)
    notes = "\n".join(getattr(raised.value, "__notes__", []))
    assert "argument 'x' is None" in notes and "_scale_add" in notes
    _jit_still_works()


def test_jit_list_of_lists_is_a_pytree_not_an_array():
    """Lists are containers (pytrees), so a list of numbers is a tree of scalars, as in JAX."""
    @hlojit.jit
    def total(values):
        return sum(values)

    assert total([1.0, 2.0, 3.0]) == 6.0
    with pytest.raises(TypeError, match=r"values\[0\]\[0\]"):
        hlojit.jit(lambda values: np.sum(values))([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(hlojit.jit(lambda values: np.sum(values))(np.asarray([[1.0, 2.0]])), 3.0)


# --- dimensions -----------------------------------------------------------------------------------


def test_shapes_beyond_32_bit_indexing_compile_with_64_bit_indices():
    """2^32 + 2^16 elements: compiled (never run), with 64-bit index arithmetic."""
    exe = compile_hlo("""HloModule big
ENTRY e { x = f32[65536,65537] parameter(0)  ROOT r = f32[65536,65537] negate(x) }""", cache=False)
    assert "i64" in exe.llvm_ir and "65537" in exe.llvm_ir
    with pytest.raises(ValueError, match="f32\\[65536,65537\\]"):
        exe(np.zeros((2, 2), np.float32))
    np.testing.assert_array_equal(compile_hlo(ADD)(X, Y), X + Y)  # hlojit still works


@pytest.mark.parametrize("dims", ["4294967296,4294967296", "9223372036854775807,2", "99999999999999999999"])
@pytest.mark.parametrize("optimize", [True, False])
def test_shapes_whose_byte_size_overflows_int64_are_rejected(dims, optimize):
    text = f"HloModule huge\nENTRY e {{ x = f32[{dims}] parameter(0)  ROOT r = f32[{dims}] negate(x) }}"
    with pytest.raises(HloVerifyError, match="bytes, more than a 64-bit size can hold"):
        compile_hlo(text, optimize=optimize, cache=False)
    np.testing.assert_array_equal(compile_hlo(ADD, optimize=optimize)(X, Y), X + Y)  # hlojit still works


# --- values ---------------------------------------------------------------------------------------

_SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -2.5, 1e-45, -1e-40, 3.4e38], np.float32)


def _binary(op: str, dtype: str = "f32", n: int = len(_SPECIALS)) -> str:
    return (f"HloModule {op}\nENTRY e {{ x = {dtype}[{n}] parameter(0)  y = {dtype}[{n}] parameter(1)\n"
            f"  ROOT r = {dtype}[{n}] {op}(x, y) }}")


@pytest.mark.parametrize("op", ["add", "subtract", "multiply", "divide", "maximum", "minimum", "remainder",
                                "power", "atan2"])
def test_nan_inf_and_denormals_follow_ieee(op):
    x = np.repeat(_SPECIALS, len(_SPECIALS))
    y = np.tile(_SPECIALS, len(_SPECIALS))
    text = _binary(op, n=x.size)
    want = evaluate(parse_module(text), [x, y])
    got = compile_hlo(text)(x, y)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    finite = ~np.isnan(want)
    if op in ("power", "atan2"):
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-5)
    else:
        np.testing.assert_array_equal(got[finite], want[finite])
        # the sign of zero is IEEE's too (maximum(-0, +0) is +0, -0 * 1 is -0)
        assert np.array_equal(np.signbit(got[finite]), np.signbit(want[finite]))
    if op in ("maximum", "minimum"):
        numpy_op = np.maximum if op == "maximum" else np.minimum
        assert np.array_equal(np.isnan(got), np.isnan(numpy_op(x, y)))  # NaN propagates as in numpy


def test_argmax_with_nan_picks_the_first_nan():
    @hlojit.jit
    def argmax(x):
        return np.argmax(x, axis=-1), np.argmin(x, axis=-1)

    x = np.array([[1, np.nan, 5, np.nan], [3, 3, 1, 1], [-np.inf, -np.inf, np.inf, np.inf]], np.float32)
    got_max, got_min = argmax(x)
    np.testing.assert_array_equal(got_max, np.argmax(x, axis=-1))
    np.testing.assert_array_equal(got_min, np.argmin(x, axis=-1))


def test_reductions_with_nan_inf_and_denormals_match_numpy():
    """max/min reductions propagate NaN as numpy does; sums keep denormals (no flush to zero)."""
    @hlojit.jit
    def reductions(x):
        return np.max(x, axis=-1), np.min(x, axis=-1), np.sum(x, axis=-1), np.maximum.reduce(x, axis=0)

    x = np.array([[1, np.nan, 5, 2], [np.inf, -np.inf, 0, 1], [1e-45, 1e-45, -0.0, 0.0],
                  [-1e-40, 3, np.nan, np.inf], [-0.0, -0.0, -0.0, -0.0]], np.float32)
    with np.errstate(invalid="ignore"):
        want = (np.max(x, axis=-1), np.min(x, axis=-1), np.sum(x, axis=-1), np.maximum.reduce(x, axis=0))
    for got, expected in zip(reductions(x), want):
        assert np.array_equal(got, expected, equal_nan=True), (got, expected)
    tiny = np.float32(1e-45)  # the smallest denormal
    assert reductions(x)[2][2] == tiny * 2 and tiny * 2 > 0  # a denormal sum, not flushed to zero
    np.testing.assert_array_equal(reductions(np.ones((2, 3), np.float32))[2], [3, 3])


@pytest.mark.parametrize("dtype", ["s8", "s32", "s64", "u8", "u32"])
def test_integer_division_by_zero_and_overflow_are_defined(dtype):
    np_dtype = {"s8": np.int8, "s32": np.int32, "s64": np.int64, "u8": np.uint8, "u32": np.uint32}[dtype]
    info = np.iinfo(np_dtype)
    values = np.array([info.min, info.max, 0, 1, 7, info.max - 1, -1 if info.min < 0 else 2], np_dtype)
    x, y = np.repeat(values, values.size), np.tile(values, values.size)
    for op in ("divide", "remainder", "add", "multiply", "subtract"):
        text = _binary(op, dtype, x.size)
        want = evaluate(parse_module(text), [x, y])
        np.testing.assert_array_equal(compile_hlo(text)(x, y), want, err_msg=op)
    if info.min < 0:
        quotient = compile_hlo(_binary("divide", dtype, 2))(np.array([5, info.min], np_dtype),
                                                           np.array([0, -1], np_dtype))
        np.testing.assert_array_equal(quotient, [-1, info.min])  # x / 0 = -1, INT_MIN / -1 wraps


def test_integer_division_by_zero_under_jit_matches_numpy():
    @hlojit.jit
    def divide(a, b):
        return a // b, a % b, a + b * 3

    a = np.array([5, -5, 0, np.iinfo(np.int32).max, np.iinfo(np.int32).min], np.int32)
    b = np.array([0, 0, 0, -1, -1], np.int32)
    with np.errstate(all="ignore"):
        want = (a // b, a % b, a + b * 3)
    for g, w in zip(divide(a, b), want):
        np.testing.assert_array_equal(g, w)


# --- HLO text -------------------------------------------------------------------------------------


def test_valid_syntax_with_inconsistent_shapes_is_a_verify_error():
    text = "HloModule m\nENTRY e { x = f32[4,3] parameter(0)  ROOT r = f32[4,4] negate(x) }"
    with pytest.raises(HloVerifyError, match=r"instruction 'r'.*f32\[4,4\].*f32\[4,3\]"):
        compile_hlo(text, cache=False)


def test_valid_syntax_with_inconsistent_shapes_is_a_verify_error_without_passes():
    text = "HloModule m\nENTRY e { x = f32[4,3] parameter(0)  ROOT r = f32[4,4] negate(x) }"
    with pytest.raises(HloVerifyError):
        compile_hlo(text, optimize=False, cache=False)


def test_gather_that_collapses_an_empty_slice_is_rejected():
    text = """HloModule g
ENTRY e { x = f32[3,5] parameter(0)  i = s32[4,1] parameter(1)
  ROOT r = f32[4,5] gather(x, i), offset_dims={1}, collapsed_slice_dims={0}, start_index_map={0},
    index_vector_dim=1, slice_sizes={0,5} }"""
    with pytest.raises(HloVerifyError, match="slice size is 0"):
        compile_hlo(text, cache=False)


def test_unknown_opcode_is_a_parse_error_with_position():
    with pytest.raises(HloParseError, match="unknown opcode 'frobnicate'") as raised:
        parse_module("HloModule m\nENTRY e { x = f32[] parameter(0)  ROOT r = f32[] frobnicate(x) }")
    assert raised.value.line == 2


@pytest.mark.parametrize("text, cycle", [
    ("HloModule m\nc { x = f32[] parameter(0)  ROOT r = f32[] call(x), to_apply=c }\n"
     "ENTRY e { x = f32[] parameter(0)  ROOT r = f32[] call(x), to_apply=c }", "'c'"),
    ("HloModule m\na { x = f32[] parameter(0)  ROOT r = f32[] call(x), to_apply=b }\n"
     "b { x = f32[] parameter(0)  ROOT r = f32[] call(x), to_apply=a }\n"
     "ENTRY e { x = f32[] parameter(0)  ROOT r = f32[] call(x), to_apply=a }", "'a'"),
])
def test_recursion_is_an_error_naming_the_cycle(text, cycle):
    with pytest.raises((HloParseError, HloVerifyError), match=f"{cycle} calls itself"):
        compile_hlo(text, cache=False)


def test_recursion_in_a_built_module_is_a_verify_error_naming_the_cycle():
    from hlojit.ir.module import Computation, Instruction, Module
    from hlojit.ir.attributes import Attrs
    from hlojit.ir.opcodes import Opcode
    from hlojit.ir.shape import scalar
    from hlojit.ir.dtypes import DType
    from hlojit.ir.verifier import verify

    f32 = scalar(DType.F32)
    param = Instruction("x", Opcode.PARAMETER, f32, (), Attrs({}), parameter_number=0)
    loop = Computation("loop", (param, Instruction("r", Opcode.CALL, f32, ("x",), Attrs({"to_apply": "loop"}))), "r")
    entry = Computation("e", (param, Instruction("r", Opcode.CALL, f32, ("x",), Attrs({"to_apply": "loop"}))), "r")
    with pytest.raises(HloVerifyError, match="loop"):
        verify(Module("m", (loop, entry), "e"))


# --- control flow ---------------------------------------------------------------------------------

_COUNTDOWN = """HloModule countdown
cond { s = (s32[], f32[3]) parameter(0)  i = s32[] get-tuple-element(s), index=0  z = s32[] constant(0)
  ROOT ne = pred[] compare(i, z), direction=NE }
body { s = (s32[], f32[3]) parameter(0)  i = s32[] get-tuple-element(s), index=0
  x = f32[3] get-tuple-element(s), index=1  one = s32[] constant(1)  j = s32[] subtract(i, one)
  y = f32[3] add(x, x)  ROOT t = (s32[], f32[3]) tuple(j, y) }
ENTRY e { n = s32[] parameter(0)  x = f32[3] parameter(1)  t = (s32[], f32[3]) tuple(n, x)
  w = (s32[], f32[3]) while(t), condition=cond, body=body  ROOT r = f32[3] get-tuple-element(w), index=1 }"""


@pytest.mark.parametrize("optimize", [True, False])
def test_a_loop_that_never_ends_is_bounded_by_max_while_iterations(optimize):
    """By default a while loop runs as long as its condition holds (XLA's semantics: a loop that never
    ends never returns). With max_while_iterations=N the native loop stops before its (N+1)-th trip
    and the call raises ExecutionError; the interpreter's option of the same name counts the same way."""
    exe = compile_hlo(_COUNTDOWN, optimize=optimize, cache=False, max_while_iterations=10)
    x = np.ones(3, np.float32)
    np.testing.assert_array_equal(exe(np.int32(10), x), x * 2**10)  # exactly the limit: fine
    with pytest.raises(ExecutionError, match="status 1"):
        exe(np.int32(-1), x)  # counts down forever
    with pytest.raises(ExecutionError):
        exe(np.int32(11), x)
    with pytest.raises(WhileIterationLimitError, match="max_while_iterations=10"):
        evaluate(parse_module(_COUNTDOWN), [np.int32(11), x], max_while_iterations=10)
    np.testing.assert_array_equal(exe(np.int32(3), x), x * 8)  # still works


def test_max_while_iterations_is_validated():
    with pytest.raises(ValueError, match="max_while_iterations"):
        CodegenOptions(max_while_iterations=-1)
    with pytest.raises(ValueError, match="max_while_iterations"):
        CodegenOptions(max_while_iterations=2.5)


def test_max_while_iterations_through_jit():
    def run(n, x):
        return hlojit.while_loop(lambda s: s[0] != 0, lambda s: (s[0] - 1, s[1] * 2), (n, x))[1]

    bounded = hlojit.jit(run, max_while_iterations=5)
    x = np.ones(2, np.float32)
    np.testing.assert_array_equal(bounded(np.int32(5), x), x * 32)
    with pytest.raises(ExecutionError):
        bounded(np.int32(-1), x)
    np.testing.assert_array_equal(bounded(np.int32(2), x), x * 4)


def test_masked_arrays_and_matrices_are_refused_not_silently_unmasked():
    """A masked array's mask and np.matrix's `*` mean something plain arrays do not: refuse them clearly,
    naming the argument, and keep working for plain arrays."""
    x = np.arange(4, dtype=np.float32)
    masked = np.ma.masked_array(x, mask=[0, 1, 0, 0])

    double = hlojit.jit(lambda v: v * 2)
    with pytest.raises(hlojit.tracing.errors.InvalidArgumentError, match=r"argument 'v'.*MaskedArray.*filled"):
        double(masked)
    with pytest.warns(PendingDeprecationWarning):  # numpy's own warning on making a matrix
        matrix = np.asmatrix(x)
    with pytest.raises(hlojit.tracing.errors.InvalidArgumentError, match="matrix"):
        double(matrix)
    np.testing.assert_array_equal(double(x), x * 2)

    exe = compile_hlo("HloModule m\nENTRY e { x = f32[4] parameter(0)  ROOT n = f32[4] negate(x) }")
    with pytest.raises(TypeError, match="masked array"):
        exe(masked)
    np.testing.assert_array_equal(exe(x), -x)
