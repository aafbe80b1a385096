"""``python -m live.cli``: the ``fomm-live`` command."""

import sys

from live.cli import main

sys.exit(main())
