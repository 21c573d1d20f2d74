"""`python -m fibinet_tutorial.train`: the main job's command line (`train.cli`).

Not here: the flags (`train.cli`), what the job does (`train.job`).
"""

import sys

from .cli import main

sys.exit(main())
