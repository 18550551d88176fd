"""``python -m collabrl``: the same as the ``collabrl`` command."""

import sys

from collabrl.cli import main

sys.exit(main())
