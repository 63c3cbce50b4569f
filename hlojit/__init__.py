"""hlojit: a linear-algebra JIT compiler for Python in the style of XLA."""

__version__ = "0.1.0"
