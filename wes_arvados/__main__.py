"""`python -m wes_arvados` is the `wes-arvados` command."""

import sys

from .cli import main

sys.exit(main())
