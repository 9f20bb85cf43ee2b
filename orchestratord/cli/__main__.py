"""`python -m orchestratord.cli`: orchestratorctl without its console script."""

import sys

from .main import main

sys.exit(main())
