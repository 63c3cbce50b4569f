"""Tests of the pass registry and the pipeline driver: verification, timing, dumps, fixpoints."""

from __future__ import annotations

import itertools

import pytest

from hlojit.compiler.pipeline import (
    Fixpoint,
    PassRecord,
    PassVerificationError,
    Pipeline,
    default_pipeline,
    get_pass,
    list_passes,
    parse_pipeline,
    register_pass,
    unregister_pass,
)
from hlojit.ir.attributes import Raw
from hlojit.ir.errors import HloVerifyError
from hlojit.ir.module import Module
from hlojit.ir.parser import parse_module

BUILTIN_PASSES = ["inline-calls", "algebraic-simplifier", "tuple-simplifier", "constant-folding", "dce", "cse"]

WITH_DEAD_CODE = """
HloModule m

ENTRY main {
  x = f32[4]{0} parameter(0)
  dead = f32[4]{0} exponential(x)
  ROOT n = f32[4]{0} negate(x)
}
"""


@pytest.fixture
def module() -> Module:
    return parse_module(WITH_DEAD_CODE)


@pytest.fixture
def test_passes():
    """Throw-away passes registered for one test and removed afterwards."""
    names: list[str] = []

    def register(name: str, function):
        register_pass(name, f"test pass {name}")(function)
        names.append(name)
        return name

    yield register
    for name in names:
        unregister_pass(name)


def _mark_root(module: Module, text: str) -> Module:
    """The module with the entry root's metadata set to `text` (a valid, different module)."""
    entry = module.entry
    root = entry.root.replace(attrs=entry.root.attrs.replace(metadata=Raw(text)))
    new_entry = entry.with_instructions(root if i.name == root.name else i for i in entry.instructions)
    return module.replace_computation(new_entry)


# --- the registry ----------------------------------------------------------------------------------


def test_builtin_passes_are_listed_in_registration_order_with_descriptions():
    listed = list_passes()
    names = [info.name for info in listed]
    assert names[: len(BUILTIN_PASSES)] == BUILTIN_PASSES
    for info in listed:
        assert info.description and "\n" not in info.description
        assert get_pass(info.name) is info


def test_unknown_pass_error_lists_the_known_ones():
    with pytest.raises(KeyError) as info:
        get_pass("no-such-pass")
    message = info.value.args[0]
    assert "no-such-pass" in message
    for name in BUILTIN_PASSES:
        assert name in message


def test_registering_a_taken_name_or_a_bad_name_fails():
    with pytest.raises(ValueError, match="already registered"):
        register_pass("dce", "another dce")(lambda m: m)
    with pytest.raises(ValueError, match="lower-case"):
        register_pass("Bad Name", "x")


def test_a_pipeline_with_an_unknown_pass_fails_when_built():
    with pytest.raises(KeyError, match="no-such-pass"):
        Pipeline(["dce", Fixpoint(["no-such-pass"])])


# --- verification ----------------------------------------------------------------------------------


def test_verifier_names_the_pass_that_broke_the_module(module, test_passes):
    def break_operands(m: Module) -> Module:
        entry = m.entry
        root = entry.root.replace(operands=("undefined_value",))
        return m.replace_computation(entry.with_instructions(
            root if i.name == root.name else i for i in entry.instructions))

    test_passes("break-operands", break_operands)
    pipeline = Pipeline(["dce", "break-operands", "cse"])
    with pytest.raises(PassVerificationError) as info:
        pipeline.run(module)
    assert info.value.pass_name == "break-operands"
    assert "'break-operands'" in str(info.value) and "undefined_value" in str(info.value)
    assert isinstance(info.value, HloVerifyError)
    # Without verification the broken module comes out unchecked.
    broken = pipeline.run(module, verify=False)
    assert broken.entry.root.operands == ("undefined_value",)


def test_an_invalid_input_is_reported_before_any_pass(test_passes):
    calls = []
    test_passes("record-call", lambda m: calls.append(m) or m)
    broken = parse_module(WITH_DEAD_CODE)
    entry = broken.entry
    broken = broken.replace_computation(entry.with_instructions(
        i.replace(operands=("nowhere",)) if i.name == "n" else i for i in entry.instructions))
    with pytest.raises(HloVerifyError, match="before any pass"):
        Pipeline(["record-call"]).run(broken)
    assert calls == []


def test_a_failing_pass_is_named_in_the_exception_notes(module, test_passes):
    def explode(m: Module) -> Module:
        raise RuntimeError("boom")

    test_passes("explode", explode)
    with pytest.raises(RuntimeError, match="boom") as info:
        Pipeline(["explode"]).run(module)
    assert any("'explode'" in note for note in info.value.__notes__)


def test_a_pass_must_return_a_module(module, test_passes):
    test_passes("returns-none", lambda m: None)
    with pytest.raises(TypeError, match="returns-none"):
        Pipeline(["returns-none"]).run(module)


# --- timing and dumps ------------------------------------------------------------------------------


def test_timings_record_each_pass_and_whether_it_changed_anything(module):
    timings: list[PassRecord] = []
    result = Pipeline(["cse", "dce", "dce"]).run(module, timings=timings)
    assert [(r.name, r.changed) for r in timings] == [("cse", False), ("dce", True), ("dce", False)]
    assert all(r.seconds >= 0 for r in timings)
    name, seconds, changed = timings[1]  # records unpack as (name, seconds, changed)
    assert (name, changed) == ("dce", True)
    assert "dead" not in str(result)


def test_dump_callback_sees_before_and_after_of_matching_passes_only(module):
    calls = []

    def dump(pass_name, when, m, changed):
        calls.append((pass_name, when, m, changed))

    result = Pipeline(["cse", "dce", "algebraic-simplifier"]).run(module, dump=dump, dump_filter=r"^(dce|cse)$")
    assert [(c[0], c[1], c[3]) for c in calls] == [
        ("cse", "before", False), ("cse", "after", False),
        ("dce", "before", True), ("dce", "after", True),
    ]
    assert calls[2][2] == module  # dce's "before" is the module it was given
    assert calls[3][2] == result  # and its "after" is what it produced
    # Without a filter every pass is dumped.
    calls.clear()
    Pipeline(["cse", "dce"]).run(module, dump=dump)
    assert [c[0] for c in calls] == ["cse", "cse", "dce", "dce"]


# --- fixpoints -------------------------------------------------------------------------------------


def test_fixpoint_repeats_until_nothing_changes(test_passes):
    # The simplifier cancels the whole chain of negate pairs in one round; the fixpoint
    # runs a second round to see that nothing changes any more, and stops.
    text = """
HloModule m

ENTRY main {
  x = f32[] parameter(0)
  a = f32[] negate(x)
  b = f32[] negate(a)
  c = f32[] negate(b)
  d = f32[] negate(c)
  e = f32[] negate(d)
  ROOT f = f32[] negate(e)
}
"""
    simplifier = get_pass("algebraic-simplifier")
    test_passes("simplify-copy", simplifier.function)
    timings: list[PassRecord] = []
    result = Pipeline([Fixpoint(["simplify-copy"], max_iterations=10)]).run(parse_module(text), timings=timings)
    assert "negate" not in str(result)
    assert [(r.name, r.changed) for r in timings] == [("simplify-copy", True), ("simplify-copy", False)]


def test_fixpoint_stops_at_max_iterations_when_a_pass_always_changes(module, test_passes):
    counter = itertools.count()
    test_passes("always-changes", lambda m: _mark_root(m, f"round {next(counter)}"))
    timings: list[PassRecord] = []
    result = Pipeline([Fixpoint(["always-changes", "dce"], max_iterations=3)]).run(module, timings=timings)
    assert [r.name for r in timings] == ["always-changes", "dce"] * 3
    assert [r.changed for r in timings] == [True, True, True, False, True, False]
    assert "round 2" in str(result)


def test_fixpoint_needs_stages_and_a_positive_bound():
    with pytest.raises(ValueError, match="max_iterations"):
        Fixpoint(["dce"], max_iterations=0)
    with pytest.raises(ValueError, match="no stages"):
        Fixpoint([])


# --- building pipelines ----------------------------------------------------------------------------


def test_default_pipeline_shape():
    pipeline = default_pipeline()
    assert str(pipeline) == (
        "inline-calls,fixpoint(algebraic-simplifier,tuple-simplifier,constant-folding,dce),cse,dce"
    )
    simplify = pipeline.stages[1]
    assert isinstance(simplify, Fixpoint) and simplify.name == "simplify"
    assert pipeline.pass_names() == BUILTIN_PASSES


def test_parse_pipeline_reads_names_groups_and_fixpoints():
    assert str(parse_pipeline("dce")) == "dce"
    assert str(parse_pipeline(" inline-calls , simplify, cse ")) == (
        "inline-calls,fixpoint(algebraic-simplifier,tuple-simplifier,constant-folding,dce),cse"
    )
    assert str(parse_pipeline("fixpoint(cse,dce),tuple-simplifier")) == "fixpoint(cse,dce),tuple-simplifier"
    assert str(parse_pipeline("default")) == str(default_pipeline())
    # What a pipeline prints, parse_pipeline reads back.
    assert str(parse_pipeline(str(default_pipeline()))) == str(default_pipeline())


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "no passes"),
        ("dce,,cse", "expected a pass name"),
        ("fixpoint(dce", "missing"),
        ("dce)", "unexpected"),
        ("nope", "unknown pass 'nope'"),
        ("fixpoint()", "expected a pass name"),
    ],
)
def test_parse_pipeline_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_pipeline(spec)
