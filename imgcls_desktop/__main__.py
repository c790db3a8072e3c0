"""``python -m imgcls_desktop [DATA_DIR]`` starts the desktop application."""

import sys

from .app import main

sys.exit(main())
