"""``python -m wsfast``: the same as the ``wsfast`` command."""

import sys

from .cli import main

sys.exit(main())
