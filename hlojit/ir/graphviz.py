"""Graphviz (`dot`) rendering of a module: one cluster per computation, edges from operands to users."""

from __future__ import annotations

from .module import Computation, Module
from .opcodes import Kind

# Node colours by opcode kind, so the expensive parts of a graph stand out.
_FILL = {
    Kind.LEAF: "#e8e8e8",
    Kind.LINALG: "#f4b183",
    Kind.REDUCTION: "#9dc3e6",
    Kind.CONTROL: "#c5e0b4",
    Kind.FUSION: "#ffe699",
    Kind.SORT: "#d5a6bd",
}


def _quote(text: str) -> str:
    # Backslashes are left alone: labels use dot's own `\n` line breaks.
    return '"' + text.replace('"', '\\"') + '"'


def _node_id(comp: Computation, name: str) -> str:
    return _quote(f"{comp.name}/{name}")


def module_to_dot(module: Module) -> str:
    """The module as a Graphviz digraph; render with `dot -Tsvg`."""
    lines = [f"digraph {_quote(module.name)} {{", "  rankdir=TB;", '  node [shape=box, style="rounded,filled", fontname="monospace", fontsize=10];']
    for index, comp in enumerate(module.reachable_computations()):
        is_entry = comp.name == module.entry_name
        lines.append(f"  subgraph cluster_{index} {{")
        lines.append(f"    label={_quote(('ENTRY ' if is_entry else '') + comp.name)};")
        for instr in comp.instructions:
            label = f"{instr.name}\\n{instr.opcode.text} {instr.shape}"
            if instr.called_computations:
                label += "\\n→ " + ", ".join(instr.called_computations)
            fill = _FILL.get(instr.opcode.kind, "white")
            border = ', penwidth=2' if instr.name == comp.root_name else ""
            lines.append(f"    {_node_id(comp, instr.name)} [label={_quote(label)}, fillcolor={_quote(fill)}{border}];")
        for instr in comp.instructions:
            for operand in instr.operands:
                lines.append(f"    {_node_id(comp, operand)} -> {_node_id(comp, instr.name)};")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"
