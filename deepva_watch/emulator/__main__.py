"""``python -m deepva_watch.emulator``."""

import sys

from .cli import main

sys.exit(main())
