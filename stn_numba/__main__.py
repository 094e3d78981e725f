"""``python -m stn_numba``: the ``stn-numba`` command."""

from .cli import main

raise SystemExit(main())
