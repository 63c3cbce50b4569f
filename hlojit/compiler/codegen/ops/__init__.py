"""Op emitters for instructions that materialize their own output.

One module per concept (reduce.py, dot.py, control_flow.py, ...). Every module
in this package is imported by `registry.load_all()`, so a new file that uses
`@register_emitter` / `@register_elemental` is picked up without editing
anything else. See /work/notes/codegen_interface.md.
"""
