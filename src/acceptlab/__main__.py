"""``python -m acceptlab`` is the ``acceptlab`` command."""

import sys

from .cli import main

sys.exit(main())
