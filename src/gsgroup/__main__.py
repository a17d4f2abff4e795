"""``python -m gsgroup`` (and ``torchrun -m gsgroup``): the gsgroup command line."""

import sys

from .cli import main

sys.exit(main())
