"""`python -m seedtree.cli ...`, as the `seedtree` script."""

import sys

from seedtree.cli import main

sys.exit(main())
