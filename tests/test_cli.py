"""The `hlojit` command: every subcommand, its exit codes, and its error messages."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from hlojit.cli import main
from hlojit.ir.parser import parse_module

from .conftest import CORPUS_DIR, CORPUS_NAMES, corpus_io, corpus_text


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_dump_parsed_prints_module_that_reparses(capsys):
    status, out, _ = run_cli(capsys, "dump", str(CORPUS_DIR / "attention.hlo"), "--stage", "parsed")
    assert status == 0
    assert out.startswith("HloModule jit_attention")
    original = parse_module((CORPUS_DIR / "attention.hlo").read_text())
    assert parse_module(out) == original


def test_dump_optimized_inlines_calls(capsys):
    status, out, _ = run_cli(capsys, "dump", str(CORPUS_DIR / "cumsum.hlo"))
    assert status == 0
    module = parse_module(out)
    assert all(i.opcode.text != "call" for c in module.computations for i in c)


def test_dump_after_each_pass_names_only_passes_that_changed(capsys):
    status, out, _ = run_cli(capsys, "dump", str(CORPUS_DIR / "argmax_onehot.hlo"), "--after-each-pass")
    assert status == 0
    headers = [line for line in out.splitlines() if line.startswith("// ---- after pass")]
    assert headers, out
    assert any("inline-calls" in h for h in headers)


def test_dump_selected_passes_and_timing(capsys):
    status, out, err = run_cli(
        capsys, "dump", str(CORPUS_DIR / "argmax_onehot.hlo"), "--passes", "inline-calls,dce", "--timing"
    )
    assert status == 0
    assert "inline-calls" in err and "dce" in err and " ms" in err
    assert " call(" not in out


def test_dump_dot_format(capsys):
    status, out, _ = run_cli(capsys, "dump", str(CORPUS_DIR / "cond.hlo"), "--stage", "parsed", "--format", "dot")
    assert status == 0
    assert out.startswith("digraph")
    assert "conditional" in out and "->" in out


def test_unknown_pass_is_an_error(capsys):
    status, _, err = run_cli(capsys, "dump", str(CORPUS_DIR / "cond.hlo"), "--passes", "no-such-pass")
    assert status == 2
    assert "no-such-pass" in err


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_run_interpreter_checks_every_corpus_case(capsys, name):
    npz = str(CORPUS_DIR / f"{name}.npz")
    status, out, _ = run_cli(
        capsys, "run", str(CORPUS_DIR / f"{name}.hlo"), "--interpret", "--inputs", npz, "--check", npz
    )
    assert status == 0, out
    assert out.rstrip().splitlines()[-1].startswith("PASS")


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_run_native_checks_every_corpus_case(capsys, name):
    npz = str(CORPUS_DIR / f"{name}.npz")
    status, out, _ = run_cli(capsys, "run", str(CORPUS_DIR / f"{name}.hlo"), "--inputs", npz, "--check", npz)
    assert status == 0, out
    assert out.rstrip().splitlines()[-1].startswith("PASS") and "(native)" in out


def test_run_check_against_interpreter_with_timing(capsys):
    status, out, _ = run_cli(
        capsys, "run", str(CORPUS_DIR / "layernorm.hlo"), "--check", "interpreter", "--time", "--repeat", "5"
    )
    assert status == 0, out
    assert "PASS" in out
    assert "compile:" in out and "run: median" in out and "llvm_optimize" in out


@pytest.mark.parametrize(
    "stage, marker",
    [("llvm", "define i32 @"), ("llvm-opt", "define "), ("asm", "ret")],
)
def test_dump_native_stages(capsys, stage, marker):
    status, out, _ = run_cli(capsys, "dump", str(CORPUS_DIR / "gelu_tanh.hlo"), "--stage", stage)
    assert status == 0
    assert marker in out


def test_dump_asm_of_tanh_uses_vector_registers(capsys):
    status, out, _ = run_cli(capsys, "dump", str(CORPUS_DIR / "gelu_tanh.hlo"), "--stage", "asm")
    assert status == 0
    assert "zmm" in out or "ymm" in out
    assert "tanhf" not in out


def test_run_check_reports_mismatch_with_exit_1(capsys, tmp_path):
    args, outs = corpus_io("where_clip")
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, out0=outs[0] + 1.0)
    inputs = tmp_path / "in.npz"
    np.savez(inputs, arg0=args[0], arg1=args[1])
    status, out, _ = run_cli(
        capsys, "run", str(CORPUS_DIR / "where_clip.hlo"), "--interpret", "--inputs", str(inputs), "--check", str(wrong)
    )
    assert status == 1
    assert "FAIL" in out and "max abs err 1" in out


def test_run_random_inputs_prints_outputs(capsys):
    status, out, _ = run_cli(capsys, "run", str(CORPUS_DIR / "int_math.hlo"), "--interpret", "--seed", "3")
    assert status == 0
    assert out.startswith("out0: float32[20]")


def test_run_inputs_with_wrong_shape_exit_2(capsys, tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, arg0=np.zeros((3, 3), np.float32), arg1=np.zeros((10, 10), np.float32))
    status, _, err = run_cli(capsys, "run", str(CORPUS_DIR / "where_clip.hlo"), "--interpret", "--inputs", str(bad))
    assert status == 2
    assert "arg0" in err and "(3, 3)" in err and "f32[10,10]" in err


def test_run_inputs_with_wrong_count_exit_2(capsys, tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, arg0=np.zeros((10, 10), np.float32))
    status, _, err = run_cli(capsys, "run", str(CORPUS_DIR / "where_clip.hlo"), "--interpret", "--inputs", str(bad))
    assert status == 2
    assert "1 inputs" in err and "takes 2" in err


def test_missing_file_exit_2(capsys, tmp_path):
    status, _, err = run_cli(capsys, "dump", str(tmp_path / "nope.hlo"))
    assert status == 2
    assert "no such file" in err


def test_malformed_file_reports_line_and_column(capsys, tmp_path):
    bad = tmp_path / "bad.hlo"
    bad.write_text("HloModule m\n\nENTRY e {\n  x = f32[4] parameter(0)\n  ROOT y = f32[4] add(x, x\n}\n")
    status, _, err = run_cli(capsys, "dump", str(bad))
    assert status == 2
    assert f"{bad}:" in err
    # The error points into the broken instruction, not at the start of the file.
    location = err.split(str(bad) + ":", 1)[1].split(":")[:2]
    assert int(location[0]) >= 5 and int(location[1]) >= 1


def test_passes_lists_names_and_descriptions(capsys):
    status, out, _ = run_cli(capsys, "passes")
    assert status == 0
    names = [line.split()[0] for line in out.splitlines()]
    for expected in ("inline-calls", "dce", "cse", "constant-folding", "algebraic-simplifier"):
        assert expected in names
    assert all(len(line.split()) > 1 for line in out.splitlines())


def test_python_dash_m_is_the_same_command():
    result = subprocess.run(
        [sys.executable, "-m", "hlojit", "passes"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "dce" in result.stdout


SOFTMAX_SOURCE = """import dataclasses

import numpy as np


@dataclasses.dataclass
class Config:  # a dataclass needs its module in sys.modules while the file runs
    axis: int = -1


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
"""


@pytest.fixture
def softmax_file(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(SOFTMAX_SOURCE)
    return path


def test_dump_traces_a_python_function(capsys, softmax_file):
    status, out, _ = run_cli(capsys, "dump", f"{softmax_file}:softmax", "--arg", "f32[4,8]", "--stage", "traced")
    assert status == 0
    module = parse_module(out)
    assert module.entry.parameter_shapes[0].dims == (4, 8)
    assert {i.opcode.text for i in module.entry} >= {"reduce", "exponential", "divide"}


def test_dump_python_function_to_assembly(capsys, softmax_file):
    status, out, _ = run_cli(capsys, "dump", f"{softmax_file}:softmax", "--arg", "f32[64,128]", "--stage", "asm")
    assert status == 0
    assert "zmm" in out or "ymm" in out


BACKEND_PHASES = ("buffer assignment", "LLVM IR emission", "LLVM optimization", "machine code", "load")


def _timing_rows(err: str) -> dict[str, float]:
    """`--timing` output rows: name -> milliseconds."""
    rows = {}
    for line in err.splitlines()[1:]:
        name, _, rest = line.strip().rpartition(" ms")[0].rpartition(" ")
        rows[name.strip()] = float(rest)
    return rows


def test_dump_timing_breaks_down_a_traced_python_function(capsys, softmax_file):
    status, out, err = run_cli(capsys, "dump", f"{softmax_file}:softmax", "--arg", "f32[64,128]", "--timing")
    assert status == 0
    assert parse_module(out).entry.parameter_shapes[0].dims == (64, 128)  # the dump itself is unchanged
    assert err.startswith("compile timings (total ")
    rows = _timing_rows(err)
    assert list(rows)[0] == "tracing"
    assert "pass fusion" in rows  # timed for the breakdown although the optimized stage stops before it
    for phase in BACKEND_PHASES:
        assert phase in rows and rows[phase] >= 0, (phase, err)
    passes = [name for name in rows if name.startswith("pass ")]
    assert rows["HLO passes (all)"] >= max(rows[name] for name in passes)


def test_dump_timing_of_an_hlo_file_and_a_traced_stage(capsys):
    path = str(CORPUS_DIR / "softmax_tanh.hlo")
    status, out, err = run_cli(capsys, "dump", path, "--stage", "parsed", "--timing")
    assert status == 0 and parse_module(out) == parse_module((CORPUS_DIR / "softmax_tanh.hlo").read_text())
    rows = _timing_rows(err)
    assert list(rows)[0] == "parsing" and all(phase in rows for phase in BACKEND_PHASES)


def test_dump_buffers_stage_prints_the_buffer_assignment_of_the_fused_module(capsys):
    status, out, _ = run_cli(capsys, "dump", str(CORPUS_DIR / "attention.hlo"), "--stage", "buffers")
    assert status == 0
    assert out.startswith("scratch arena:") and "instructions:" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["{file}:softmax"], "takes 1 arguments"),
        (["{file}:missing", "--arg", "f32[3]"], "no function 'missing'"),
        (["{file}:softmax", "--arg", "q32[3]"], "unknown dtype 'q32'"),
    ],
)
def test_dump_python_function_errors(capsys, softmax_file, argv, message):
    status, _, err = run_cli(capsys, "dump", *[a.format(file=softmax_file) for a in argv])
    assert status == 2
    assert message in err


def test_cache_info_and_clear(capsys, tmp_path, monkeypatch):
    import hlojit.runtime.cache as cache_module

    monkeypatch.setenv("HLOJIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HLOJIT_DISABLE_CACHE", raising=False)
    monkeypatch.setattr(cache_module, "_default", None)  # re-read the environment
    from hlojit.api import compile_hlo

    compile_hlo(corpus_text("where_clip"))
    status, out, _ = run_cli(capsys, "cache", "info")
    assert status == 0
    assert str(tmp_path / "cache") in out and "entries: 1" in out
    status, out, _ = run_cli(capsys, "cache", "clear")
    assert status == 0 and "removed 1 cache entries" in out
    status, out, _ = run_cli(capsys, "cache", "info")
    assert "entries: 0" in out


def test_cache_info_when_disabled(capsys, monkeypatch):
    import hlojit.runtime.cache as cache_module

    monkeypatch.setenv("HLOJIT_DISABLE_CACHE", "1")
    monkeypatch.setattr(cache_module, "_default", None)
    status, out, _ = run_cli(capsys, "cache", "info")
    assert status == 0 and "disabled" in out


def test_dump_and_run_an_onnx_model(capsys, tmp_path):
    onnx = pytest.importorskip("onnx", reason="onnx is a test extra (CI installs it and refuses to skip)")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Add", ["h", "x"], ["y"])],
        "relu_add",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
    )
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)

    status, out, _ = run_cli(capsys, "dump", str(path), "--arg", "f32[3,4]", "--stage", "parsed")
    assert status == 0
    assert parse_module(out).entry.parameter_shapes[0].dims == (3, 4)

    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
    inputs, expected = tmp_path / "in.npz", tmp_path / "out.npz"
    np.savez(inputs, arg0=x)
    np.savez(expected, out0=np.maximum(x, 0) + x)
    status, out, _ = run_cli(capsys, "run", str(path), "--arg", "f32[3,4]", "--inputs", str(inputs), "--check", str(expected))
    assert status == 0, out


def test_dump_fused_stage_and_explain_fusion(capsys):
    status, out, _ = run_cli(capsys, "dump", str(CORPUS_DIR / "softmax_tanh.hlo"), "--stage", "fused", "--explain-fusion")
    assert status == 0
    text, _, explanation = out.partition("// fusion:")
    module = parse_module(text)
    assert any(i.opcode.text == "fusion" for i in module.entry)
    assert " fused, " in explanation and " refused" in explanation
