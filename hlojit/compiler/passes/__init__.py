"""The optimization passes. Importing this package registers every pass with the pipeline.

One module per pass; `rewrite.py` holds the machinery they share for
rebuilding computations. Registration order is the order `list_passes()`
reports, roughly the order the default pipeline runs them.
"""

from . import inline_calls  # noqa: F401  (imported for registration)
from . import algebraic_simplifier  # noqa: F401
from . import tuple_simplifier  # noqa: F401
from . import constant_folding  # noqa: F401
from . import dce  # noqa: F401
from . import cse  # noqa: F401
from . import layout_assignment  # noqa: F401
