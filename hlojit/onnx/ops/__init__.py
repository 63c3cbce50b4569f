"""ONNX op lowerings, one module per family. Importing this package fills `registry.LOWERINGS`."""

from . import activations, constants, conv_pool, elementwise, linalg, normalization, reductions, shape_ops

__all__ = ["activations", "constants", "conv_pool", "elementwise", "linalg", "normalization", "reductions",
           "shape_ops"]
