"""``python -m hookgate``."""

from __future__ import annotations

import sys

from hookgate.cli import main

sys.exit(main())
