"""Data-dependent control flow: `cond`, `switch`, `while_loop` and `fori_loop`.

Inside a jitted function these lower to HLO `conditional` and `while`: each
branch, loop condition and loop body is traced once into its own frame (a
sub-computation). Values the functions use from outside (closures over
tracers of the enclosing function) are captured as extra operands, so user
code can close over anything. The operands and the loop carry may be any
pytree; branch outputs must agree in structure, shape and dtype (a weakly
typed Python-scalar result adapts to the other branch's dtype, as in JAX), and
so must the loop carry from one iteration to the next.

Outside jit (no trace active) they simply run in Python on concrete values,
so the same code works eagerly and compiled.

HLO needs each branch / loop computation to take one (tuple) parameter,
while tracing discovers captured values only as it goes. So each traced
function becomes an *implementation* computation with one parameter per leaf
(captures appended as they are found) and a small *wrapper* that unpacks the
tuple and calls it; hlojit's call-inlining pass removes the indirection.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from hlojit.ir.shape import TupleShape

from . import ops
from .errors import ControlFlowError
from .promotion import AbstractValue, result_type
from .pytree import TreeDef, flatten, unflatten
from .trace import Capture, Frame, Origin, current_frame, entered, is_tracing
from .tracer import Tracer


def _concrete_bool(value: Any, what: str) -> bool:
    array = np.asarray(value)  # a tracer here (outside any trace) raises its leak error
    if array.shape != ():
        raise ControlFlowError(f"hlojit.{what}: the predicate must be a scalar, got an array of shape {array.shape}")
    return bool(array)


def _check_callable(what: str, **functions: Any) -> None:
    for name, fn in functions.items():
        if not callable(fn):
            raise TypeError(f"hlojit.{what}: {name} must be callable, got {type(fn).__name__}")


# --- tracing one function into a sub-computation ------------------------------------------------------


class _Traced:
    """A function traced into a sub-frame: its output leaves (tracers of the sub-frame) and structure."""

    def __init__(self, frame: Frame, outputs: list[Tracer], tree: TreeDef):
        self.frame = frame
        self.outputs = outputs
        self.tree = tree


def _trace_function(parent: Frame, name: str, fn: Callable[..., Any], arg_avals: Sequence[AbstractValue],
                    arg_origins: Sequence[frozenset[Origin]], build_args: Callable[[list[Tracer]], tuple]) -> _Traced:
    sub = Frame(parent.trace, parent.trace.module_builder.unique_name(name), parent=parent)
    try:
        with entered(sub):
            params = [sub.parameter(aval, origins) for aval, origins in zip(arg_avals, arg_origins)]
            result = fn(*build_args(params))
            leaves, tree = flatten(result)
            outputs = []
            for i, leaf in enumerate(leaves):
                try:
                    outputs.append(sub.lift(leaf))
                except TypeError as failure:
                    raise ControlFlowError(f"{name}: output {i} is not an array: {failure}") from None
    except BaseException:
        sub.close()  # the trace is abandoned; its tracers must not be used later
        raise
    return _Traced(sub, outputs, tree)


def _finish(traced: _Traced, root_is_tuple: bool = True) -> str:
    """Build the implementation computation (root: tuple of the outputs) and close its frame."""
    builder = traced.frame.builder
    if root_is_tuple:
        root = builder.tuple(*[t._instr for t in traced.outputs])
    else:
        root = traced.outputs[0]._instr
    builder.build(root)
    traced.frame.close()
    return traced.frame.name


def _discard(traced: _Traced) -> None:
    """Finish an abandoned attempt (the module prunes unreachable computations at the end of the trace)."""
    builder = traced.frame.builder
    if not builder.instructions:
        builder.constant(np.asarray(False))
    builder.build()
    traced.frame.close()


def _wrapper(frame: Frame, name: str, slot_shapes: list, impl: str, impl_slots: list[int],
             passthrough: list[int] | None = None, outputs: int = 0) -> str:
    """A computation taking the tuple of `slot_shapes` and calling `impl` on the slots `impl_slots`.

    With `passthrough` (a loop body) the result is the tuple (impl's `outputs` results..., the
    passthrough slots...); otherwise it is impl's result itself.
    """
    mb = frame.trace.module_builder
    c = mb.computation(mb.unique_name(name))
    state = c.parameter(TupleShape(tuple(slot_shapes)), "state")
    elements: dict[int, Any] = {}

    def slot(i: int):
        if i not in elements:
            elements[i] = c.get_tuple_element(state, i)
        return elements[i]

    result = c.call(impl, *[slot(i) for i in impl_slots])
    if passthrough is not None:
        values = [c.get_tuple_element(result, j) for j in range(outputs)] + [slot(i) for i in passthrough]
        c.tuple(*values)
    else:
        c.set_root(result)
    c.build()
    return c.name


def _origins(*groups: Sequence[Tracer]) -> frozenset[Origin]:
    result: frozenset[Origin] = frozenset()
    for group in groups:
        for t in group:
            result = result | t.origins
    return result


def _unify_outputs(what: str, branch_names: Sequence[str], traced: Sequence[_Traced]) -> list[AbstractValue]:
    """Check the branches return the same structure and shapes; convert weak dtypes to agree."""
    first = traced[0]
    for name, other in zip(branch_names[1:], traced[1:]):
        if other.tree != first.tree:
            raise ControlFlowError(f"hlojit.{what}: the branches must return the same structure, but "
                                   f"{branch_names[0]} returns {first.tree} and {name} returns {other.tree}")
    avals = []
    for i in range(len(first.outputs)):
        leaves = [t.outputs[i] for t in traced]
        shapes = {leaf.shape for leaf in leaves}
        if len(shapes) != 1:
            described = ", ".join(f"{n} gives {leaf.aval}" for n, leaf in zip(branch_names, leaves))
            raise ControlFlowError(f"hlojit.{what}: output {i} of the branches must have one shape: {described}")
        dtype, weak = result_type(*(leaf.aval for leaf in leaves))
        for name, leaf in zip(branch_names, leaves):
            if not leaf.weak and leaf.dtype != dtype:
                described = ", ".join(f"{n} gives {lf.aval}" for n, lf in zip(branch_names, leaves))
                raise ControlFlowError(f"hlojit.{what}: output {i} of the branches must have one dtype: "
                                       f"{described}")
        for t in traced:
            t.outputs[i] = ops.convert(t.outputs[i], dtype, weak=weak)
        avals.append(AbstractValue(leaves[0].shape, dtype, weak))
    return avals


# --- cond and switch ------------------------------------------------------------------------------------


def _branches(what: str, selector: Tracer, branches: Sequence[Callable[..., Any]], operands: tuple) -> Any:
    frame = current_frame()
    assert frame is not None
    selector = frame.lift(selector)
    leaves, tree = flatten(operands)
    outer = [frame.lift(leaf) for leaf in leaves]
    operand_origin = Origin("control flow", f"an operand of hlojit.{what}")
    names = [getattr(b, "__name__", f"branch {k}") for k, b in enumerate(branches)]
    traced = [
        _trace_function(frame, f"branch_{k}_fun", branch, [t.aval for t in outer],
                        [t.origins | {operand_origin} for t in outer], lambda params: unflatten(tree, params))
        for k, branch in enumerate(branches)
    ]
    avals = _unify_outputs(what, names, traced)
    wrappers, operand_tuples = [], []
    slot_shapes = [t.aval.hlo_shape for t in outer]
    tuples_by_elements: dict[tuple[str, ...], Any] = {}  # branches with the same operands share one tuple
    for k, branch_trace in enumerate(traced):
        captures: list[Capture] = branch_trace.frame.captures
        impl = _finish(branch_trace)
        shapes = slot_shapes + [c.outer.aval.hlo_shape for c in captures]
        wrappers.append(_wrapper(frame, f"branch_{k}", shapes, impl, list(range(len(shapes)))))
        elements = tuple(t._instr.name for t in outer) + tuple(c.outer._instr.name for c in captures)
        if elements not in tuples_by_elements:
            tuples_by_elements[elements] = frame.builder.tuple(*elements)
        operand_tuples.append(tuples_by_elements[elements])
    instr = frame.builder.conditional(selector._instr, wrappers, operand_tuples)
    captured = [c.outer for t in traced for c in t.frame.captures]
    origins = _origins([selector], outer, captured)
    results = ops.tuple_elements(frame, instr, origins, [a.weak for a in avals])
    return unflatten(traced[0].tree, results)


def cond(pred: Any, true_fun: Callable[..., Any], false_fun: Callable[..., Any], *operands: Any) -> Any:
    """`true_fun(*operands)` if `pred` else `false_fun(*operands)`, traceable.

    With a traced `pred` (inside jit) both branches are traced and the result
    is an HLO conditional; they must return pytrees of the same structure,
    shapes and dtypes. With a concrete `pred` the chosen branch simply runs.
    """
    _check_callable("cond", true_fun=true_fun, false_fun=false_fun)
    if not (is_tracing() and isinstance(pred, Tracer)):
        return true_fun(*operands) if _concrete_bool(pred, "cond") else false_fun(*operands)
    if pred.shape != ():
        raise ControlFlowError(f"hlojit.cond: the predicate must be a scalar, got {pred.aval}")
    return _branches("cond", ops.convert(current_frame().lift(pred), np.bool_, weak=False),
                     [true_fun, false_fun], operands)


def switch(index: Any, branches: Sequence[Callable[..., Any]], *operands: Any) -> Any:
    """`branches[index](*operands)`, traceable; `index` is clamped to the valid range as in JAX."""
    branches = list(branches)
    if not branches:
        raise ValueError("hlojit.switch: needs at least one branch")
    _check_callable("switch", **{f"branches[{k}]": b for k, b in enumerate(branches)})
    if not (is_tracing() and isinstance(index, Tracer)):
        array = np.asarray(index)
        if array.shape != ():
            raise ControlFlowError(f"hlojit.switch: the index must be a scalar, got shape {array.shape}")
        chosen = min(max(int(array), 0), len(branches) - 1)
        return branches[chosen](*operands)
    if index.shape != () or index.dtype.kind not in "iub":
        raise ControlFlowError(f"hlojit.switch: the index must be an integer scalar, got {index.aval}")
    if len(branches) == 1:
        return branches[0](*operands)
    frame = current_frame()
    selector = ops.convert(frame.lift(index), np.int32, weak=False)
    low, high = ops.full(frame, (), 0, np.int32), ops.full(frame, (), len(branches) - 1, np.int32)
    selector = frame.wrap(frame.builder.clamp(low._instr, selector._instr, high._instr), False, selector.origins)
    return _branches("switch", selector, branches, operands)


# --- loops -----------------------------------------------------------------------------------------------


def while_loop(cond_fun: Callable[[Any], Any], body_fun: Callable[[Any], Any], init_val: Any) -> Any:
    """Repeat `val = body_fun(val)` while `cond_fun(val)`; `val` is any pytree of arrays. Traceable.

    Inside jit this is an HLO while loop; the carry must keep its structure,
    shapes and dtypes from one iteration to the next (a Python-scalar initial
    value takes the dtype the body gives it).
    """
    _check_callable("while_loop", cond_fun=cond_fun, body_fun=body_fun)
    if not is_tracing():
        value = init_val
        while _concrete_bool(cond_fun(value), "while_loop"):
            value = body_fun(value)
        return value
    frame = current_frame()
    leaves, tree = flatten(init_val)
    carry = [frame.lift(leaf) for leaf in leaves]
    carry_origin = Origin("control flow", "a hlojit.while_loop / fori_loop carry")
    origins = [_origins(carry) | {carry_origin}] * len(carry)

    def build(params: list[Tracer]) -> tuple:
        return (unflatten(tree, params),)

    for _attempt in range(len(carry) + 1):
        avals = [t.aval for t in carry]
        cond_trace = _trace_function(frame, "while_cond", cond_fun, avals, origins, build)
        body_trace = _trace_function(frame, "while_body", body_fun, avals, origins, build)
        promoted = _check_carry(tree, avals, cond_trace, body_trace)
        if promoted is None:
            break
        _discard(cond_trace)
        _discard(body_trace)
        carry = [ops.convert(t, aval.dtype, weak=aval.weak) for t, aval in zip(carry, promoted)]
    else:  # pragma: no cover - each retry strengthens at least one weak leaf, so this cannot loop forever
        raise ControlFlowError("hlojit.while_loop: the carry's dtypes did not settle")

    # The loop state: the carry, then every outer value either function captured (passed through unchanged).
    extra: list[Tracer] = []
    slot_of: dict[int, int] = {}
    for capture in cond_trace.frame.captures + body_trace.frame.captures:
        if id(capture.source) not in slot_of:
            slot_of[id(capture.source)] = len(carry) + len(extra)
            extra.append(capture.outer)
    n = len(carry)
    slot_shapes = [t.aval.hlo_shape for t in carry] + [t.aval.hlo_shape for t in extra]
    cond_slots = list(range(n)) + [slot_of[id(c.source)] for c in cond_trace.frame.captures]
    body_slots = list(range(n)) + [slot_of[id(c.source)] for c in body_trace.frame.captures]
    cond_impl = _finish(cond_trace, root_is_tuple=False)
    body_impl = _finish(body_trace)
    condition = _wrapper(frame, "while_condition", slot_shapes, cond_impl, cond_slots)
    body = _wrapper(frame, "while_body_wrapper", slot_shapes, body_impl, body_slots,
                    passthrough=list(range(n, n + len(extra))), outputs=n)
    init = frame.builder.tuple(*[t._instr for t in carry], *[t._instr for t in extra])
    loop = frame.builder.while_(init, condition, body)
    weak = [t.weak for t in carry] + [t.weak for t in extra]
    results = ops.tuple_elements(frame, loop, _origins(carry, extra), weak, count=n)
    return unflatten(tree, results)


def _check_carry(tree: TreeDef, avals: list[AbstractValue], cond_trace: _Traced,
                 body_trace: _Traced) -> list[AbstractValue] | None:
    """Validate the traced condition and body; return promoted carry types if the body widened a weak one."""
    if len(cond_trace.outputs) != 1 or cond_trace.outputs[0].shape != ():
        got = ", ".join(str(t.aval) for t in cond_trace.outputs) or "nothing"
        raise ControlFlowError(f"hlojit.while_loop: cond_fun must return a scalar boolean, got {got}")
    predicate = cond_trace.outputs[0]
    cond_trace.outputs[0] = ops.convert(predicate, np.bool_, weak=False)
    if body_trace.tree != tree:
        raise ControlFlowError(f"hlojit.while_loop: body_fun must return the carry's structure {tree}, "
                               f"got {body_trace.tree}")
    promoted = list(avals)
    changed = False
    for i, (aval, out) in enumerate(zip(avals, body_trace.outputs)):
        if out.shape != aval.shape:
            raise ControlFlowError(f"hlojit.while_loop: carry leaf {i} changes shape in body_fun: "
                                   f"{aval} -> {out.aval}; a loop carry must keep its shape")
        if out.dtype == aval.dtype:
            body_trace.outputs[i] = ops.convert(out, aval.dtype, weak=aval.weak)
            continue
        if aval.weak:  # a Python-scalar start takes the type the body computes (JAX does the same)
            dtype, weak = result_type(aval, out.aval)
            promoted[i] = AbstractValue(aval.shape, dtype, weak)
            changed = True
        elif out.weak:
            body_trace.outputs[i] = ops.convert(out, aval.dtype, weak=False)
        else:
            raise ControlFlowError(f"hlojit.while_loop: carry leaf {i} changes dtype in body_fun: {aval} -> "
                                   f"{out.aval}; convert it (astype) so the carry keeps its dtype")
    return promoted if changed else None


def fori_loop(lower: Any, upper: Any, body_fun: Callable[[Any, Any], Any], init_val: Any) -> Any:
    """`for i in range(lower, upper): val = body_fun(i, val)`, traceable (an HLO while loop under jit)."""
    _check_callable("fori_loop", body_fun=body_fun)
    if not is_tracing():
        value = init_val
        for i in range(int(np.asarray(lower)), int(np.asarray(upper))):
            value = body_fun(i, value)
        return value
    frame = current_frame()
    index_dtype, weak = result_type(*(v.aval if isinstance(v, Tracer) else _index_aval(v) for v in (lower, upper)))
    if index_dtype.kind not in "iu":
        raise ControlFlowError(f"hlojit.fori_loop: lower and upper must be integers, got {index_dtype}")
    start = ops.convert(frame.lift(lower, dtype=index_dtype), index_dtype, weak=weak)

    def keep_going(state: tuple) -> Any:
        return state[0] < upper

    def step(state: tuple) -> tuple:
        i, value = state
        return i + 1, body_fun(i, value)

    return while_loop(keep_going, step, (start, init_val))[1]


def _index_aval(value: Any) -> AbstractValue:
    from .trace import concrete_aval

    return concrete_aval(value)


__all__ = ["cond", "fori_loop", "switch", "while_loop"]
