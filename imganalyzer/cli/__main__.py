"""``python -m imganalyzer.cli``: the ``imganalyzer`` command."""

import sys

from imganalyzer.cli.main import main

sys.exit(main())
