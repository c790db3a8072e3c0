"""``python -m imgcls_desktop.cli``: the ``imgcls`` command."""

import sys

from . import main

sys.exit(main())
