"""``python -m imgcls_desktop.engine``: the engine process the window starts."""

from .server import main

main()
