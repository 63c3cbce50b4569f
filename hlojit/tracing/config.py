"""Settings of the tracing front end.

`log_compiles`: log every compilation of a jitted function, with the reason
(which argument's shape, dtype or static value changed), through the
`logging` logger "hlojit" at WARNING level. It starts from the environment
variable HLOJIT_LOG_COMPILES (read once, when this module is imported; "1",
"true", "yes" or "on" enable it) and can be changed at any time:

    import hlojit.tracing.config
    hlojit.tracing.config.log_compiles = True

A single jitted function can also ask for it: `hlojit.jit(f, log_compiles=True)`.
"""

from __future__ import annotations

import os

_TRUE_WORDS = ("1", "true", "yes", "on")


def _environment_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE_WORDS


log_compiles: bool = _environment_flag("HLOJIT_LOG_COMPILES")

__all__ = ["log_compiles"]
