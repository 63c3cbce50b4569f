"""The `hlojit` command: dump a program at any stage, run it, list passes.

Exit status: 0 success; 1 a `--check` comparison failed; 2 bad input (missing
file, malformed program, inputs that do not fit the program).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

EXIT_OK, EXIT_MISMATCH, EXIT_BAD_INPUT = 0, 1, 2

STAGES_IR = ("parsed", "traced", "optimized", "fused", "buffers")
STAGES_NATIVE = ("llvm", "llvm-opt", "asm")


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


# --- loading programs -----------------------------------------------------------------------------


def load_module(path: str, arg_specs: Sequence[str] = ()):
    """Parse a program into a Module. `FILE.hlo`, or `FILE.py:FUNCTION` traced for `arg_specs`."""
    python_function = re.fullmatch(r"(.+\.py):([A-Za-z_]\w*)", path)
    if python_function:
        return _trace_python_function(Path(python_function[1]), python_function[2], arg_specs)
    from hlojit.ir.parser import parse_module

    file = Path(path)
    if not file.is_file():
        raise CliError(f"{path}: no such file")
    if file.suffix == ".onnx":
        return _import_onnx(file, arg_specs)
    if file.suffix != ".hlo":
        raise CliError(f"{path}: unknown program type {file.suffix!r}; expected FILE.hlo, FILE.onnx or FILE.py:FUNCTION")
    if arg_specs:
        raise CliError("--arg is for FILE.py:FUNCTION and FILE.onnx; an .hlo file states its own parameter shapes")
    return parse_module(file.read_text(), filename=str(file))


def _import_onnx(file: Path, arg_specs: Sequence[str]):
    """An ONNX model as a Module; `--arg` specs fix the dims of symbolic inputs (in graph order)."""
    from hlojit.ir.errors import HloError

    try:
        from hlojit.onnx import load_module_from_onnx
    except ImportError:
        raise CliError(f"{file}: ONNX models need the onnx extra: pip install 'hlojit[onnx]'") from None
    dims = None
    if arg_specs:
        from hlojit.tracing import ShapeDtype

        try:
            dims = [tuple(ShapeDtype.from_text(spec).shape) for spec in arg_specs]
        except ValueError as e:
            raise CliError(f"--arg: {e}") from None
    try:
        return load_module_from_onnx(file, input_shapes=dims, default_dim=1)
    except (HloError, ValueError) as e:
        raise CliError(f"{file}: {e}") from None


def _trace_python_function(file: Path, function_name: str, arg_specs: Sequence[str]):
    """Import a Python file and trace one of its functions (plain or @jit) for the given shapes."""
    import importlib.util
    import inspect

    from hlojit.tracing import trace_to_module

    if not file.is_file():
        raise CliError(f"{file}: no such file")
    spec = importlib.util.spec_from_file_location(f"_hlojit_cli_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs, as a normal import would be: dataclasses and pickling look it up.
    sys.modules[spec.name] = module
    sys.path.insert(0, str(file.parent.resolve()))  # the file's own sibling imports work
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    function = getattr(module, function_name, None)
    if function is None or not callable(function):
        raise CliError(f"{file}: has no function {function_name!r}")
    target = getattr(function, "__wrapped__", function)
    try:
        wanted = len([p for p in inspect.signature(target).parameters.values()
                      if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)])
    except (TypeError, ValueError):
        wanted = len(arg_specs)
    if len(arg_specs) < wanted:
        raise CliError(f"{file}:{function_name} takes {wanted} arguments; give each with --arg, e.g. --arg f32[64,128]")
    try:
        return trace_to_module(function, list(arg_specs))
    except ValueError as e:  # a malformed --arg spec
        raise CliError(f"--arg: {e}") from None


def _leaf_count(shape) -> int:
    return sum(1 for _ in shape.leaves())


def _unflatten(shape, leaves: list[np.ndarray]):
    """Nest flat leaves (the corpus .npz order) to match a possibly-tuple shape."""
    if not shape.is_tuple:
        return leaves.pop(0)
    return tuple(_unflatten(e, leaves) for e in shape.elements)


def _flatten(value) -> list[np.ndarray]:
    if isinstance(value, (tuple, list)):
        return [leaf for v in value for leaf in _flatten(v)]
    return [np.asarray(value)]


def random_array(shape, rng: np.random.Generator) -> np.ndarray:
    """A random array for one parameter: small integers, normal floats, random booleans."""
    dt = shape.dtype
    if dt.is_pred:
        return rng.random(shape.dims) < 0.5
    if dt.is_integer:
        lo = 0 if dt.is_unsigned else -8
        return rng.integers(lo, 9, size=shape.dims).astype(dt.numpy)
    return rng.standard_normal(shape.dims).astype(dt.numpy)


def load_inputs(module, path: str | None, seed: int) -> list:
    """Arguments for the entry computation, from an .npz (`arg0..argN`, flattened) or random."""
    params = module.entry_layout.parameters
    if path is None:
        rng = np.random.default_rng(seed)
        return [_unflatten(p, [random_array(leaf, rng) for leaf in p.leaves()]) for p in params]
    try:
        with np.load(path) as data:
            names = sorted((k for k in data.files if k.startswith("arg")), key=lambda k: int(k[3:]))
            leaves = [data[k] for k in names]
    except (OSError, ValueError) as e:
        raise CliError(f"{path}: cannot read inputs: {e}") from None
    wanted = sum(_leaf_count(p) for p in params)
    if len(leaves) != wanted:
        raise CliError(f"{path}: has {len(leaves)} inputs (arg0..), the program takes {wanted}")
    flat_shapes = [leaf for p in params for leaf in p.leaves()]
    for i, (arr, shape) in enumerate(zip(leaves, flat_shapes)):
        if arr.shape != shape.dims or arr.dtype != shape.dtype.numpy:
            raise CliError(
                f"{path}: arg{i}: the program expects {shape.without_layout()}, "
                f"got {arr.dtype} array of shape {arr.shape}"
            )
    return [_unflatten(p, leaves) for p in params]


def load_expected(path: str) -> list[np.ndarray]:
    try:
        with np.load(path) as data:
            names = sorted((k for k in data.files if k.startswith("out")), key=lambda k: int(k[3:]))
            return [data[k] for k in names]
    except (OSError, ValueError) as e:
        raise CliError(f"{path}: cannot read expected outputs: {e}") from None


# --- comparing ------------------------------------------------------------------------------------


def compare_outputs(got: list[np.ndarray], want: list[np.ndarray], rtol: float, atol: float) -> tuple[bool, list[str]]:
    """Compare flattened outputs; returns (all ok, one report line per output)."""
    if len(got) != len(want):
        return False, [f"the program returned {len(got)} outputs, expected {len(want)}"]
    ok, lines = True, []
    for i, (g, w) in enumerate(zip(got, want)):
        if g.shape != w.shape or g.dtype != w.dtype:
            ok = False
            lines.append(f"out{i}: FAIL got {g.dtype}{list(g.shape)}, expected {w.dtype}{list(w.shape)}")
            continue
        if np.issubdtype(w.dtype, np.inexact):
            g64, w64 = g.astype(np.float64), w.astype(np.float64)
            close = np.isclose(g64, w64, rtol=rtol, atol=atol, equal_nan=True)
            diff = np.where(np.isnan(g64) & np.isnan(w64), 0.0, np.abs(g64 - w64))
            worst_abs = float(np.max(diff)) if diff.size else 0.0
            worst_rel = float(np.max(diff / np.maximum(np.abs(w64), atol))) if diff.size else 0.0
            detail = f"max abs err {worst_abs:.3g}, max rel err {worst_rel:.3g}"
        else:
            close = g == w
            detail = f"{int(np.count_nonzero(~close))} of {w.size} elements differ"
        good = bool(np.all(close))
        ok &= good
        lines.append(f"out{i}: {'ok  ' if good else 'FAIL'} {w.dtype}{list(w.shape)}  {detail}")
    return ok, lines


# --- commands -------------------------------------------------------------------------------------


def _pipeline(passes: str | None, stage: str):
    from hlojit.compiler.pipeline import default_pipeline, optimizing_pipeline, parse_pipeline

    if passes is None:
        # What is compiled is the fused module; "optimized" stops before fusion.
        return default_pipeline() if stage == "optimized" else optimizing_pipeline()
    try:
        return parse_pipeline(passes)
    except ValueError as e:  # an unknown pass or a malformed list; the message says which
        raise CliError(str(e)) from None


def cmd_dump(args: argparse.Namespace) -> int:
    from hlojit.ir.graphviz import module_to_dot

    loading_started = time.perf_counter()
    module = load_module(args.file, args.arg)
    loading = time.perf_counter() - loading_started
    out = sys.stdout

    def render(m) -> str:
        return module_to_dot(m) if args.format == "dot" else m.to_text()

    if args.stage in ("parsed", "traced") and not args.after_each_pass and not args.timing:
        out.write(render(module))
        return EXIT_OK

    def dump(pass_name: str, when: str, m, changed: bool) -> None:
        if when == "after" and changed:
            out.write(f"// ---- after pass {pass_name} ----\n")
            out.write(render(m))
            out.write("\n")

    timings: list = []
    if args.stage in ("parsed", "traced") and not args.after_each_pass:
        out.write(render(module))
        optimized = _pipeline(args.passes, "fused").run(module, timings=timings)  # for --timing only
    else:
        optimized = _pipeline(args.passes, args.stage).run(
            module, dump=dump if args.after_each_pass else None, timings=timings
        )
        if args.stage in STAGES_NATIVE:
            from hlojit.api import native_text

            out.write(native_text(optimized, args.stage, optimize=False))
        elif args.stage == "buffers":
            from hlojit.api import buffer_plan_text

            out.write(buffer_plan_text(optimized))
        elif not args.after_each_pass:
            out.write(render(optimized))
    if args.explain_fusion:
        from hlojit.compiler.fusion import explain_fusion
        from hlojit.compiler.pipeline import default_pipeline

        decisions = explain_fusion(default_pipeline().run(module))
        refused = [d for d in decisions if not d.fused]
        out.write(f"// fusion: {len(decisions) - len(refused)} fused, {len(refused)} refused\n")
        for decision in refused:
            out.write(f"// refused: {decision}\n")
    if args.timing:
        _print_timing(args, module, optimized, loading, timings)
    return EXIT_OK


def _print_timing(args: argparse.Namespace, module, optimized, loading: float, timings: list) -> None:
    """Where a compile of the program goes, to stderr: loading, each pass, each backend phase.

    The backend compiles what `compile_hlo` would: the output of the optimizing
    pipeline (when the stage stopped before fusion, the fusion pass is run and
    timed too), without the persistent cache.
    """
    from hlojit.compiler.pipeline import Pipeline

    if args.passes is None and args.stage == "optimized":
        optimized = Pipeline(["fusion"], name="fusion").run(optimized, timings=timings)
    front_end = "tracing" if re.fullmatch(r".+\.py:\w+", args.file) else "parsing"
    rows = [(front_end, loading, "")]
    rows += [(f"pass {name}", seconds, "changed" if changed else "") for name, seconds, changed in timings]
    rows.append(("HLO passes (all)", sum(t[1] for t in timings), ""))
    try:
        from hlojit.api import profile_backend

        rows += [(phase, seconds, "") for phase, seconds in profile_backend(optimized)]
    except Exception as error:  # noqa: BLE001 - a module the backend refuses still gets its pass timings
        rows.append((f"backend failed: {type(error).__name__}: {error}", 0.0, ""))
    total = sum(seconds for name, seconds, _ in rows if not name.startswith("pass "))
    sys.stderr.write(f"compile timings (total {total * 1e3:.2f} ms; passes are part of 'HLO passes (all)'):\n")
    for name, seconds, note in rows:
        sys.stderr.write(f"  {name:<32} {seconds * 1e3:9.3f} ms{'  ' + note if note else ''}\n")


def cmd_run(args: argparse.Namespace) -> int:
    module = load_module(args.file, args.arg)
    inputs = load_inputs(module, args.inputs, args.seed)

    if args.interpret:
        from hlojit.ir.interpreter import evaluate

        t0 = time.perf_counter()
        result = evaluate(module, inputs)
        run_times = [time.perf_counter() - t0]
        compile_seconds = 0.0
        engine = "interpreter"
    else:
        from hlojit.api import compile_hlo

        t0 = time.perf_counter()
        executable = compile_hlo(module)
        compile_seconds = time.perf_counter() - t0
        result = executable(*inputs)
        run_times = []
        for _ in range(args.repeat if args.time else 0):
            t0 = time.perf_counter()
            executable(*inputs)
            run_times.append(time.perf_counter() - t0)
        engine = "native"

    got = _flatten(result)
    status = EXIT_OK
    if args.check:
        if args.check == "interpreter":
            from hlojit.ir.interpreter import evaluate

            want = _flatten(evaluate(module, inputs))
        else:
            want = load_expected(args.check)
        ok, lines = compare_outputs(got, want, args.rtol, args.atol)
        for line in lines:
            print(line)
        print(f"{'PASS' if ok else 'FAIL'}: {Path(args.file).name} ({engine}) vs {args.check}")
        status = EXIT_OK if ok else EXIT_MISMATCH
    else:
        with np.printoptions(threshold=64, edgeitems=4, precision=6):
            for i, value in enumerate(got):
                print(f"out{i}: {value.dtype}{list(value.shape)}\n{value}")
    if args.time:
        print(f"compile: {compile_seconds * 1e3:.2f} ms")
        if not args.interpret:
            phases = ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in executable.timings.items() if k != "total")
            print(f"  phases: {phases}")
        if run_times:
            print(f"run: median {np.median(run_times) * 1e6:.1f} us over {len(run_times)} calls ({engine})")
    return status


def cmd_passes(args: argparse.Namespace) -> int:
    from hlojit.compiler.pipeline import list_passes

    entries = list_passes()
    width = max(len(p.name) for p in entries)
    for p in entries:
        print(f"{p.name:<{width}}  {p.description}")
    return EXIT_OK


def cmd_cache(args: argparse.Namespace) -> int:
    from hlojit.runtime.cache import cache_clear, cache_info

    if args.action == "clear":
        print(f"removed {cache_clear()} cache entries")
        return EXIT_OK
    info = cache_info()
    if not info["enabled"]:
        print(f"compilation cache disabled: {info.get('reason', 'unknown reason')}")
        return EXIT_OK
    print(f"path:    {info['path']}")
    print(f"entries: {info['entries']}")
    print(f"requests: {info.get('input_entries', 0)} (input entries naming a compiled entry)")
    print(f"size:    {info['bytes'] / 1024:.1f} KiB")
    return EXIT_OK


# --- argument parsing -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hlojit", description="hlojit: an XLA-style JIT compiler for array programs.")
    sub = parser.add_subparsers(dest="command", required=True)

    dump = sub.add_parser("dump", help="print a program at a compilation stage")
    dump.add_argument("file", help="FILE.hlo, or FILE.py:FUNCTION to trace a Python function")
    dump.add_argument("--arg", action="append", default=[], metavar="SPEC",
                      help="an argument of FILE.py:FUNCTION as dtype[dims], e.g. f32[64,128]; once per argument")
    dump.add_argument("--stage", choices=STAGES_IR + STAGES_NATIVE, default="optimized",
                      help="which stage to print (default: optimized, i.e. simplified; fused = what is compiled; "
                           "traced = parsed, for .py; buffers = the buffer assignment of the fused module)")
    dump.add_argument("--after-each-pass", action="store_true",
                      help="print the module after every pass that changed it")
    dump.add_argument("--passes", help="passes to run instead of the default pipeline, e.g. inline-calls,simplify,cse "
                      "(groups: simplify, default, fixpoint(a,b))")
    dump.add_argument("--format", choices=("text", "dot"), default="text", help="HLO text or Graphviz dot")
    dump.add_argument("--timing", action="store_true",
                      help="print where compile time goes to stderr: tracing or parsing, each pass, buffer "
                           "assignment, LLVM IR emission, LLVM optimization, machine code, load")
    dump.add_argument("--explain-fusion", action="store_true",
                      help="after the module, list every fusion the fusion pass refused, with the reason")
    dump.set_defaults(func=cmd_dump)

    run = sub.add_parser("run", help="run a program on given or random inputs")
    run.add_argument("file", help="program file: FILE.hlo or FILE.onnx")
    run.add_argument("--arg", action="append", default=[], metavar="SPEC",
                     help="for FILE.onnx with symbolic dims: an input's shape as dtype[dims], in graph order")
    run.add_argument("--inputs", help=".npz with arg0..argN (flattened parameters); random if absent")
    run.add_argument("--check", help="compare with out0..outM of this .npz, or 'interpreter'")
    run.add_argument("--interpret", action="store_true", help="use the reference interpreter instead of native code")
    run.add_argument("--time", action="store_true", help="report compile time and median run time")
    run.add_argument("--repeat", type=int, default=50, help="calls timed by --time (default 50)")
    run.add_argument("--seed", type=int, default=0, help="seed for random inputs")
    run.add_argument("--rtol", type=float, default=2e-5, help="relative tolerance for --check on floats")
    run.add_argument("--atol", type=float, default=1e-6, help="absolute tolerance for --check on floats")
    run.set_defaults(func=cmd_run)

    cache = sub.add_parser("cache", help="show or empty the persistent compilation cache")
    cache.add_argument("action", choices=("info", "clear"), help="info: location, entries, size; clear: delete all")
    cache.set_defaults(func=cmd_cache)

    passes = sub.add_parser("passes", help="list the optimization passes")
    passes.set_defaults(func=cmd_passes)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from hlojit.ir.errors import HloError, HloParseError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HloParseError as e:
        print(f"hlojit: {getattr(args, 'file', '')}:{e}", file=sys.stderr)
    except (CliError, HloError) as e:
        print(f"hlojit: {e}", file=sys.stderr)
    except BrokenPipeError:
        return EXIT_OK
    return EXIT_BAD_INPUT
