"""What a fresh process imports on its way to a first call: the warm path must stay light.

A warm start (a jitted function whose compiled code is in the disk cache) is
dominated by imports, so the modules only a compile needs - the compiler, the
interpreter, the HLO parser, LLVM's bindings and IR builder, `logging` - must
not be imported on it.  These run in fresh processes: in this one, other tests
have imported everything already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hlojit.ir.dtypes import DType
from hlojit.ir.parser import parse_shape
from hlojit.ir.printer import shape_to_text
from hlojit.ir.shape import ArrayShape, TupleShape, array, scalar
from hlojit.runtime.executable import EntrySignature, _shape_from_text

ROOT = Path(__file__).resolve().parents[2]

# Calls a jitted MLP once and reports which modules that call imported (numpy is imported first,
# so only hlojit's own imports count), whether its code came from the cache, and its result.
WARM_START_SCRIPT = """
import json, sys
import numpy as np
before = set(sys.modules)
import hlojit

def mlp(x, w1, b1, w2, b2):
    hidden = np.maximum(x @ w1 + b1, 0.0)
    return hidden @ w2 + b2

rng = np.random.default_rng(0)
args = [rng.standard_normal(shape, dtype=np.float32) for shape in [(4, 8), (8, 16), (16,), (16, 8), (8,)]]
jitted = hlojit.jit(mlp)
result = jitted(*args)
executable = jitted.lower(*args).compile().executable
print(json.dumps({
    "imported": sorted(set(sys.modules) - before),
    "from_cache": executable.from_cache,
    "loader": getattr(executable.library, "loader", None),
    "correct": bool(np.allclose(result, mlp(*args), rtol=1e-4, atol=1e-5)),
}))
"""


def run_fresh(code: str, cache_directory: Path | None = None) -> dict:
    env = dict(os.environ)
    env.pop("HLOJIT_DISABLE_CACHE", None)
    if cache_directory is not None:
        env["HLOJIT_CACHE_DIR"] = str(cache_directory)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def imported_under(report: dict, *prefixes: str) -> list[str]:
    return [name for name in report["imported"] if any(name == p or name.startswith(p + ".") for p in prefixes)]


def test_a_warm_first_call_imports_no_compiler_interpreter_parser_or_llvm(tmp_path):
    cold = run_fresh(WARM_START_SCRIPT, tmp_path / "cache")
    warm = run_fresh(WARM_START_SCRIPT, tmp_path / "cache")
    assert not cold["from_cache"] and warm["from_cache"]
    assert cold["correct"] and warm["correct"]
    assert imported_under(cold, "hlojit.compiler"), "the cold process compiled: it must have imported the compiler"
    assert imported_under(warm, "hlojit.compiler", "hlojit.ir.interpreter", "hlojit.ir.parser") == []
    # Building a fast call wrapper needs llvmlite.ir; loading one from the cache does not.
    assert imported_under(warm, "llvmlite.ir", "hlojit.runtime.fastcall_ir") == []
    assert "logging" not in warm["imported"]
    if warm["loader"] == "native":  # the native object loader needs no LLVM at all
        assert imported_under(warm, "llvmlite.binding") == []


def test_the_codegen_registry_does_not_import_the_interpreter():
    report = run_fresh(
        "import json, sys\n"
        "from hlojit.compiler.codegen.registry import load_all\n"
        "load_all()\n"
        "print(json.dumps({'imported': sorted(sys.modules)}))\n"
    )
    assert imported_under(report, "hlojit.compiler.codegen.ops"), "load_all imports every op emitter"
    assert imported_under(report, "hlojit.ir.interpreter") == []


def test_import_hlojit_imports_nothing_else_of_hlojit():
    report = run_fresh(
        "import json, sys\n"
        "before = set(sys.modules)\n"
        "import hlojit\n"
        "print(json.dumps({'imported': sorted(set(sys.modules) - before)}))\n"
    )
    assert imported_under(report, "hlojit") == ["hlojit"]
    assert imported_under(report, "numpy", "llvmlite") == []


SHAPES = [
    scalar(DType.F32),
    scalar(DType.PRED),
    array("f32", (4, 3)),
    array("bf16", (2, 0, 5)),
    ArrayShape(DType.S64, (2, 3, 4), (0, 1, 2)),
    ArrayShape(DType.U8, (7, 1), (0, 1)),
    TupleShape(()),
    TupleShape((array("f32", (16,)), scalar(DType.S32))),
    TupleShape((TupleShape((array("f16", (2, 2)),)), scalar(DType.U32))),
]


@pytest.mark.parametrize("shape", SHAPES, ids=shape_to_text)
def test_cached_signatures_read_shapes_back_exactly(shape):
    text = shape_to_text(shape)
    assert _shape_from_text(text) == shape == parse_shape(text)


@pytest.mark.parametrize("text", ["f32[4,3]", "(f32[2]{0},s32[])", "f32[ 4 ]"])
def test_other_shape_text_goes_to_the_full_parser(text):
    assert _shape_from_text(text) == parse_shape(text)


@pytest.mark.parametrize("text", ["f32[4,3]{1,1}", "f33[2]{0}", "f32[-1]{0}", "(f32[]", "f32[2]{0}x", ""])
def test_malformed_shape_text_is_rejected_as_the_parser_rejects_it(text):
    with pytest.raises(Exception) as expected:
        parse_shape(text)
    with pytest.raises(type(expected.value)):
        _shape_from_text(text)


def test_an_entry_signature_survives_json():
    signature = EntrySignature(
        entry_name="main",
        parameter_shapes=(array("f32", (4, 3)), scalar(DType.S32)),
        parameter_names=("x", "n"),
        argument_shapes=(array("f32", (4, 3)), scalar(DType.S32)),
        result_shape=TupleShape((array("f32", (3, 4)), scalar(DType.F32))),
        scratch_size=128,
        name="m",
        aliases=((0, 1),),
    )
    assert EntrySignature.from_json(json.loads(json.dumps(signature.to_json()))) == signature
