"""`python -m orchestratord.daemon`: orchestratord without its console script."""

import sys

from .service import main

sys.exit(main())
