"""ATen op lowerings, one module per family; `hlojit.torch_backend.aten_ops` assembles the table."""
