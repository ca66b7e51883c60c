"""Entry point: ``python -m fusionlib.metrics --fused DIR --a DIR --b DIR --preset tang``."""

import sys

from fusionlib.metrics.cli import main

sys.exit(main())
