"""LLVM code generation: HLO modules to one native entry function.

Entry point: `hlojit.compiler.codegen.emitter.lower_module(module, options)`.
How the pieces fit (see each module's docstring):

    types.py        dtype -> LLVM storage/register types, loads, stores, rounding
    values.py       what an HLO value is during codegen: buffer, lazy array, tuple
    loops.py        counted loops and layout-ordered loop nests
    arith.py        scalar semantics of every elementwise opcode (XLA rules)
    elemental.py    element generators of elementwise and shape ops
    composition.py  generators of whole computations (inlined reducers, fusions)
    context.py      what generator factories and op emitters are given
    registry.py     opcode -> element generator / op emitter tables
    ops/            op emitters for ops that write their own output
    emitter.py      the module walk, buffers from hlojit/compiler/buffers.py, the ABI

Adding an op: /work/notes/codegen_interface.md.
"""
