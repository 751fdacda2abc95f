"""``python -m identity``: the same program as the ``identity`` command."""

import sys

from identity.entrypoints.cli import main

sys.exit(main())
