"""`python -m fibinet_tutorial.train`: the main job's command line (`train.cli`)."""

import sys

from .cli import main

sys.exit(main())
