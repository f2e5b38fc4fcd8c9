"""``python -m duhl_cl.cli``: the command line."""

import sys

from . import main

sys.exit(main())
