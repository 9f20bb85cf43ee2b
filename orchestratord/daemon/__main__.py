"""`python -m orchestratord.daemon`: orchestratord without its console script."""

import sys

from .main import main

sys.exit(main())
