"""``python -m netfit``: the same as the ``netfit`` command."""

import sys

from .cli import main

sys.exit(main())
