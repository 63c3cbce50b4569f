"""Fuzz regressions on disk: failing cases saved by the campaign runner, replayed by the tests.

Each regression is a pair of files named after the case:

- `NAME.hlo` + `NAME.npz`: a generated HLO module and its inputs; replayed by
  compiling the module (no passes, and the full pipeline) and comparing with
  the reference interpreter.
- `NAME.py` + `NAME.npz`: a generated numpy program (`def program(...)`);
  replayed by running it through `hlojit.jit` and comparing with numpy.
- `NAME.hlotext`: a mutated HLO text that must parse or raise HloParseError
  (nothing else), within a time bound.

The `.npz` holds the flattened arguments `arg0..argN` and, per result leaf
`i`, `exact{i}`, `err{i}` and `rel{i}` (its `Facts` allowance).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .facts import Facts

__all__ = ["load_hlo_case", "load_numpy_program", "regression_files", "save_hlo_case", "save_numpy_program",
           "save_parser_input"]

KINDS = (".hlo", ".py", ".hlotext")


def regression_files(directory: str | Path) -> list[Path]:
    """Every regression in `directory` (one path per case: the .hlo, .py or .hlotext file), sorted."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in KINDS)


def _bf16_safe(array: np.ndarray) -> tuple[np.ndarray, str]:
    """npz cannot hold ml_dtypes' bfloat16: store its bits as uint16 and remember the dtype name."""
    if array.dtype.name == "bfloat16":
        return array.view(np.uint16), "bfloat16"
    return array, array.dtype.name


def _restore(array: np.ndarray, dtype_name: str) -> np.ndarray:
    if dtype_name == "bfloat16":
        import ml_dtypes

        return array.view(ml_dtypes.bfloat16)
    return array


def _flatten_arguments(arguments: Sequence[Any]) -> list[np.ndarray]:
    flat: list[np.ndarray] = []
    for value in arguments:
        if isinstance(value, tuple):
            flat.extend(_flatten_arguments(value))
        else:
            flat.append(np.asarray(value))
    return flat


def _save_npz(path: Path, arguments: Sequence[Any], result_facts: Sequence[Facts]) -> None:
    payload: dict[str, np.ndarray] = {}
    for i, array in enumerate(_flatten_arguments(arguments)):
        stored, dtype_name = _bf16_safe(array)
        payload[f"arg{i}"] = stored
        payload[f"dtype{i}"] = np.asarray(dtype_name)
    for i, facts in enumerate(result_facts):
        payload[f"exact{i}"] = np.asarray(facts.exact)
        payload[f"err{i}"] = np.asarray(facts.err)
        payload[f"rel{i}"] = np.asarray(facts.rel)
    np.savez(path, **payload)


def _load_npz(path: Path) -> tuple[list[np.ndarray], list[Facts]]:
    with np.load(path) as data:
        count = sum(bool(re.fullmatch(r"arg\d+", k)) for k in data.files)
        arguments = [_restore(data[f"arg{i}"], str(data[f"dtype{i}"])) for i in range(count)]
        results = sum(bool(re.fullmatch(r"exact\d+", k)) for k in data.files)
        facts = [Facts(exact=bool(data[f"exact{i}"]), err=float(data[f"err{i}"]), rel=float(data[f"rel{i}"]))
                 for i in range(results)]
    return arguments, facts


def save_hlo_case(case, directory: str | Path, name: str) -> Path:
    """Write `case` (an `HloCase`) as NAME.hlo + NAME.npz; returns the .hlo path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.hlo"
    path.write_text(case.text)
    _save_npz(directory / f"{name}.npz", case.arguments, case.result_facts)
    return path


def load_hlo_case(path: str | Path):
    """The `HloCase` saved at `path` (tuple parameters are rebuilt from the entry's parameter shapes)."""
    from hlojit.ir.parser import parse_module

    from .hlo_strategies import HloCase

    path = Path(path)
    module = parse_module(path.read_text(), filename=str(path))
    leaves, facts = _load_npz(path.with_suffix(".npz"))
    remaining = iter(leaves)

    def build(shape):
        if shape.is_tuple:
            return tuple(build(element) for element in shape.elements)
        return next(remaining)

    arguments = tuple(build(p.shape) for p in module.entry.parameters)
    return HloCase(module, arguments, tuple(facts))


def save_numpy_program(program, directory: str | Path, name: str) -> Path:
    """Write `program` (a `NumpyProgram`) as NAME.py + NAME.npz; returns the .py path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.py"
    path.write_text(program.source)
    _save_npz(directory / f"{name}.npz", program.arguments, program.result_facts)
    return path


def load_numpy_program(path: str | Path):
    """The `NumpyProgram` saved at `path`."""
    from .numpy_strategies import NumpyProgram

    path = Path(path)
    arguments, facts = _load_npz(path.with_suffix(".npz"))
    return NumpyProgram(path.read_text(), tuple(arguments), tuple(facts))


def save_parser_input(text: str, directory: str | Path, name: str) -> Path:
    """Write a mutated HLO text that broke the parser as NAME.hlotext."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.hlotext"
    path.write_text(text)
    return path
