"""Semantics preservation: the interpreter gives the same values before and after every pass.

"The same" is strict: equal dtype and shape, and bit-equal values except that
any NaN matches any NaN (passes may change a NaN's payload, as XLA's do).
Signed zeros must match: that is exactly what careless `x + 0.0 -> x` breaks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hlojit.compiler.pipeline import default_pipeline, get_pass
from hlojit.ir.attributes import Attrs, SliceDim
from hlojit.ir.dtypes import DType
from hlojit.ir.interpreter import evaluate
from hlojit.ir.module import Computation, Instruction, Literal, Module
from hlojit.ir.opcodes import Opcode, Operands
from hlojit.ir.parser import parse_module
from hlojit.ir.shape import ArrayShape, TupleShape
from hlojit.ir.verifier import verify
from tests.conftest import assert_matches_xla, corpus_io, corpus_text, flatten_result

PASS_NAMES = ["inline-calls", "algebraic-simplifier", "tuple-simplifier", "constant-folding", "dce", "cse"]


def assert_same_values(before: list[np.ndarray], after: list[np.ndarray], what: str) -> None:
    assert len(before) == len(after), f"{what}: {len(before)} outputs before, {len(after)} after"
    for index, (want, got) in enumerate(zip(before, after)):
        where = f"{what}, output {index}"
        assert got.dtype == want.dtype, f"{where}: dtype {got.dtype} != {want.dtype}"
        assert got.shape == want.shape, f"{where}: shape {got.shape} != {want.shape}"
        if np.issubdtype(want.dtype, np.inexact) or want.dtype.name == "bfloat16":
            wide_want, wide_got = want.astype(np.float64), got.astype(np.float64)
            nan = np.isnan(wide_want)
            np.testing.assert_array_equal(np.isnan(wide_got), nan, err_msg=f"{where}: NaN positions differ")
            np.testing.assert_array_equal(wide_got[~nan], wide_want[~nan], err_msg=where)
            np.testing.assert_array_equal(
                np.signbit(wide_got[~nan]), np.signbit(wide_want[~nan]), err_msg=f"{where}: signed zeros differ"
            )
        else:
            np.testing.assert_array_equal(got, want, err_msg=where)


def run(module: Module, args: list[np.ndarray]) -> list[np.ndarray]:
    return flatten_result(evaluate(module, args))


# --- the corpus ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus_cache():
    """Parsed corpus modules and their interpreter results, computed once per name."""
    cache: dict[str, tuple[Module, list[np.ndarray], list[np.ndarray]]] = {}

    def get(name: str):
        if name not in cache:
            module = parse_module(corpus_text(name))
            args, _ = corpus_io(name)
            cache[name] = (module, args, run(module, args))
        return cache[name]

    return get


@pytest.mark.parametrize("pass_name", PASS_NAMES)
def test_each_pass_preserves_corpus_results(corpus_name, pass_name, corpus_cache):
    module, args, expected = corpus_cache(corpus_name)
    # Run the pass on the module as JAX wrote it and on the inlined module, where the
    # simplifications have more to work on.
    for start in (module, get_pass("inline-calls")(module)):
        result = get_pass(pass_name)(start)
        verify(result)
        assert_same_values(expected, run(result, args), f"{corpus_name} after {pass_name}")


def test_default_pipeline_preserves_corpus_results_and_matches_xla(corpus_name, corpus_cache):
    module, args, expected = corpus_cache(corpus_name)
    optimized = default_pipeline().run(module)
    got = run(optimized, args)
    assert_same_values(expected, got, f"{corpus_name} after the default pipeline")
    _, xla_outputs = corpus_io(corpus_name)
    assert_matches_xla(corpus_name, got, xla_outputs)
    # Running the pipeline again finds nothing left to do.
    assert default_pipeline().run(optimized) == optimized


def test_default_pipeline_removes_calls_and_shrinks_the_corpus(corpus_cache):
    from tests.conftest import CORPUS_NAMES

    before = after = 0
    for name in CORPUS_NAMES:
        module, _, _ = corpus_cache(name)
        optimized = default_pipeline().run(module)
        assert not any(i.opcode is Opcode.CALL for c in optimized.computations for i in c.instructions)
        before += sum(len(c.instructions) for c in module.computations)
        after += sum(len(c.instructions) for c in optimized.computations)
    assert after < 0.85 * before, f"{before} instructions before, {after} after"


# --- every identity rule against the interpreter, exhaustively ------------------------------------

_BINARY_OPS = [
    Opcode.ADD, Opcode.SUBTRACT, Opcode.MULTIPLY, Opcode.DIVIDE, Opcode.MAXIMUM, Opcode.MINIMUM,
    Opcode.AND, Opcode.OR, Opcode.XOR, Opcode.SHIFT_LEFT, Opcode.POWER,
]
_IDENTITY_DTYPES = [DType.F32, DType.F16, DType.BF16, DType.S32, DType.U8, DType.PRED]


def _operand_types_allow(opcode: Opcode, dtype: DType) -> bool:
    allowed = opcode.info.operands
    return {
        Operands.ANY: True,
        Operands.NUMERIC: not dtype.is_pred,
        Operands.FLOAT: dtype.is_float,
        Operands.INTEGER: dtype.is_integer,
        Operands.INTEGER_OR_PRED: not dtype.is_float,
        Operands.SIGNED_OR_FLOAT: dtype.is_signed or dtype.is_float,
    }[allowed]


def _binary_with_constant(opcode: Opcode, dtype: DType, constant, constant_on_left: bool) -> Module:
    shape = ArrayShape(dtype, (len(_special_values(dtype)),))
    scalar_shape = ArrayShape(dtype, ())
    x = Instruction("x", Opcode.PARAMETER, shape, parameter_number=0)
    c = Instruction("c", Opcode.CONSTANT, scalar_shape, literal=Literal(constant, scalar_shape))
    b = Instruction("b", Opcode.BROADCAST, shape, ("c",), Attrs(dimensions=()))
    operands = ("b", "x") if constant_on_left else ("x", "b")
    root = Instruction("r", opcode, shape, operands)
    return Module("identity", (Computation("main", (x, c, b, root), "r"),), "main")


@pytest.mark.parametrize("dtype", _IDENTITY_DTYPES, ids=lambda d: d.text)
def test_simplifier_is_exact_for_every_op_constant_and_side(dtype):
    """op(x, c) and op(c, x) for each special constant c, x holding every special value."""
    x = np.array(_special_values(dtype), dtype=dtype.numpy)
    simplified = 0
    for opcode in _BINARY_OPS:
        if not _operand_types_allow(opcode, dtype):
            continue
        for constant in _special_values(dtype):
            for constant_on_left in (False, True):
                module = _binary_with_constant(opcode, dtype, constant, constant_on_left)
                verify(module)
                with np.errstate(all="ignore"):
                    expected = run(module, [x])
                    result = default_pipeline().run(module)
                    got = run(result, [x])
                simplified += result.entry.root.opcode is not opcode
                assert_same_values(expected, got, f"{opcode.text}, constant {constant!r}\n{result}")
    assert simplified > 0  # the rules did fire for this type


# --- random modules --------------------------------------------------------------------------------

# Values that tell exact rewrites from inexact ones: signed zeros, identities, powers of two and
# not, infinities, NaN, a subnormal (f32) and the f16 maximum.
_FLOAT_SPECIALS = [0.0, -0.0, 1.0, -1.0, 2.0, 0.5, -8.0, 3.0, np.inf, -np.inf, np.nan, 1e-40, 65504.0]
_INT_SPECIALS = [0, 1, -1, 2, 7, -128, 127, -(2**31), 2**31 - 1]


def _special_values(dtype: DType) -> list:
    if dtype.is_float:
        return _FLOAT_SPECIALS
    if dtype.is_pred:
        return [False, True]
    info = np.iinfo(dtype.numpy)
    return [v for v in _INT_SPECIALS if info.min <= v <= info.max]


class _RandomModule:
    """Grows a random entry computation from elementwise, broadcast and reshape-like ops.

    Values are grouped by shape so that binary ops find operands that fit. Every
    instruction's shape is computed here; the verifier checks it.
    """

    def __init__(self, draw, dtype: DType):
        self.draw = draw
        self.dtype = dtype
        self.instructions: list[Instruction] = []
        self.by_shape: dict[tuple[DType, tuple[int, ...]], list[str]] = {}
        self.counter = 0

    def add(self, opcode: Opcode, dtype: DType, dims, operands=(), attrs=None, **extra) -> str:
        self.counter += 1
        name = f"{opcode.text.replace('-', '_')}.{self.counter}"
        shape = ArrayShape(dtype, tuple(dims))
        self.instructions.append(Instruction(name, opcode, shape, tuple(operands), Attrs(attrs or {}), **extra))
        self.by_shape.setdefault((dtype, shape.dims), []).append(name)
        return name

    def shape_of(self, name: str) -> ArrayShape:
        return next(i.shape for i in self.instructions if i.name == name)

    def pick(self, dtype: DType | None = None) -> str:
        keys = [k for k in self.by_shape if dtype is None or k[0] is dtype]
        key = self.draw(st.sampled_from(sorted(keys, key=str)))
        return self.draw(st.sampled_from(self.by_shape[key]))

    def scalar_constant(self, dtype: DType) -> str:
        value = self.draw(st.sampled_from(_special_values(dtype)))
        return self.add(Opcode.CONSTANT, dtype, (), literal=Literal(value, ArrayShape(dtype, ())))

    # one random step -----------------------------------------------------------------------
    def step(self) -> None:
        kind = self.draw(st.sampled_from(
            ["splat", "constant", "unary", "binary", "binary", "binary_with_splat", "binary_with_splat",
             "select", "reshape", "transpose", "broadcast", "slice", "convert"]
        ))
        getattr(self, f"_{kind}")()

    def _splat(self) -> None:
        target = self.shape_of(self.pick(self.dtype))
        scalar = self.scalar_constant(self.dtype)
        self.add(Opcode.BROADCAST, self.dtype, target.dims, (scalar,), {"dimensions": ()})

    def _constant(self) -> None:
        dims = self.shape_of(self.pick(self.dtype)).dims
        values = self.draw(st.lists(
            st.sampled_from(_special_values(self.dtype)), min_size=math.prod(dims), max_size=math.prod(dims)
        ))
        literal = Literal(np.array(values, dtype=self.dtype.numpy).reshape(dims), ArrayShape(self.dtype, dims))
        self.add(Opcode.CONSTANT, self.dtype, dims, literal=literal)

    def _unary(self) -> None:
        operand = self.pick(self.dtype)
        ops = [Opcode.NEGATE, Opcode.COPY, Opcode.ABS]
        if self.dtype.is_float:
            ops += [Opcode.EXP, Opcode.SQRT, Opcode.FLOOR]
        opcode = self.draw(st.sampled_from(ops))
        self.add(opcode, self.dtype, self.shape_of(operand).dims, (operand,))

    def _binary(self) -> None:
        lhs = self.pick(self.dtype)
        dims = self.shape_of(lhs).dims
        rhs = self.draw(st.sampled_from(self.by_shape[(self.dtype, dims)]))
        ops = [Opcode.ADD, Opcode.SUBTRACT, Opcode.MULTIPLY, Opcode.MAXIMUM, Opcode.MINIMUM]
        if self.dtype.is_float:
            ops.append(Opcode.DIVIDE)  # integer division by zero is defined oddly in XLA; keep to floats
        else:
            ops += [Opcode.AND, Opcode.OR, Opcode.XOR]
        opcode = self.draw(st.sampled_from(ops))
        if self.draw(st.booleans()):
            lhs, rhs = rhs, lhs
        self.add(opcode, self.dtype, dims, (lhs, rhs))

    def _binary_with_splat(self) -> None:
        """op(x, broadcast(c)) or op(broadcast(c), x) with a special c: what identities look like."""
        self._splat()
        splat = self.instructions[-1].name
        dims = self.instructions[-1].shape.dims
        other = self.draw(st.sampled_from(self.by_shape[(self.dtype, dims)]))
        ops = [Opcode.ADD, Opcode.SUBTRACT, Opcode.MULTIPLY, Opcode.MAXIMUM]
        ops.append(Opcode.DIVIDE if self.dtype.is_float else Opcode.AND)
        opcode = self.draw(st.sampled_from(ops))
        operands = (other, splat) if self.draw(st.booleans()) else (splat, other)
        self.add(opcode, self.dtype, dims, operands)

    def _select(self) -> None:
        lhs = self.pick(self.dtype)
        dims = self.shape_of(lhs).dims
        rhs = self.draw(st.sampled_from(self.by_shape[(self.dtype, dims)]))
        direction = self.draw(st.sampled_from(["LT", "EQ", "NE", "GE"]))
        predicate = self.add(Opcode.COMPARE, DType.PRED, dims, (lhs, rhs), {"direction": direction})
        self.add(Opcode.SELECT, self.dtype, dims, (predicate, lhs, rhs))

    def _reshape(self) -> None:
        operand = self.pick()
        shape = self.shape_of(operand)
        flat, reversed_dims = (shape.size,), tuple(reversed(shape.dims))
        without_ones = tuple(d for d in shape.dims if d != 1)
        choices = [flat, reversed_dims, (1,) + shape.dims, without_ones]
        dims = self.draw(st.sampled_from(choices))
        self.add(Opcode.RESHAPE, shape.dtype, dims, (operand,))

    def _transpose(self) -> None:
        operand = self.pick()
        shape = self.shape_of(operand)
        permutation = self.draw(st.permutations(range(shape.rank)))
        dims = [shape.dims[p] for p in permutation]
        self.add(Opcode.TRANSPOSE, shape.dtype, dims, (operand,), {"dimensions": tuple(permutation)})

    def _broadcast(self) -> None:
        operand = self.pick()
        shape = self.shape_of(operand)
        if shape.rank >= 3:
            return
        extra = self.draw(st.sampled_from([1, 2]))
        leading = self.draw(st.booleans())
        dims = ((extra,) + shape.dims) if leading else (shape.dims + (extra,))
        mapping = tuple(range(1, shape.rank + 1)) if leading else tuple(range(shape.rank))
        self.add(Opcode.BROADCAST, shape.dtype, dims, (operand,), {"dimensions": mapping})

    def _slice(self) -> None:
        operand = self.pick()
        shape = self.shape_of(operand)
        if shape.rank == 0:
            return
        slices, dims = [], []
        for size in shape.dims:
            start = self.draw(st.integers(0, size - 1))
            stride = self.draw(st.sampled_from([1, 2]))
            slices.append(SliceDim(start, size, stride))
            dims.append(len(range(start, size, stride)))
        self.add(Opcode.SLICE, shape.dtype, dims, (operand,), {"slice": tuple(slices)})

    def _convert(self) -> None:
        operand = self.pick()
        shape = self.shape_of(operand)
        target = self.draw(st.sampled_from([self.dtype, shape.dtype]))
        self.add(Opcode.CONVERT, target, shape.dims, (operand,))

    def module(self, outputs: list[str]) -> Module:
        if len(outputs) == 1:
            instructions, root = self.instructions, outputs[0]
        else:
            shapes = tuple(self.shape_of(n) for n in outputs)
            root = "result"
            result = Instruction(root, Opcode.TUPLE, TupleShape(shapes), tuple(outputs))
            instructions = self.instructions + [result]
        return Module("random", (Computation("main", tuple(instructions), root),), "main")


@st.composite
def random_modules(draw):
    dtype = draw(st.sampled_from([DType.F32, DType.S32, DType.F64]))
    dims = draw(st.sampled_from([(), (3,), (2, 3), (1, 4), (2, 1, 2)]))
    builder = _RandomModule(draw, dtype)
    parameters = []
    for number in range(draw(st.integers(1, 2))):
        name = builder.add(Opcode.PARAMETER, dtype, dims, parameter_number=number)
        parameters.append(name)
    for _ in range(draw(st.integers(2, 12))):
        builder.step()
    # Every value nothing else uses is an output, so no generated op is dead code.
    used = {operand for instr in builder.instructions for operand in instr.operands}
    outputs = [i.name for i in builder.instructions if i.name not in used and i.opcode is not Opcode.PARAMETER]
    outputs = outputs or parameters[:1]
    module = builder.module(outputs)
    args = []
    for name in parameters:
        shape = builder.shape_of(name)
        values = draw(st.lists(st.sampled_from(_special_values(dtype)), min_size=shape.size, max_size=shape.size))
        args.append(np.array(values, dtype=dtype.numpy).reshape(shape.dims))
    return module, args


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_modules())
def test_pipeline_preserves_semantics_of_random_modules(case):
    module, args = case
    verify(module)
    with np.errstate(all="ignore"):
        expected = run(module, args)
        for pass_name in PASS_NAMES:
            result = get_pass(pass_name)(module)
            verify(result)
            assert_same_values(expected, run(result, args), f"after {pass_name}\n{module}")
        optimized = default_pipeline().run(module)
        assert_same_values(expected, run(optimized, args), f"after the default pipeline\n{module}\n{optimized}")
