"""``python -m mobilenet`` (and ``torchrun -m mobilenet train``)."""

import sys

from .cli import main

sys.exit(main())
