"""`python -m hlojit` is the `hlojit` command."""

from hlojit.cli import main

raise SystemExit(main())
