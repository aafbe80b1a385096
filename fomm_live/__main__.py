"""``python -m fomm_live``: the ``fomm-live`` command."""

import sys

from fomm_live.live.cli import main

sys.exit(main())
