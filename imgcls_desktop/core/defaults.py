"""Defaults shared by every front end (the window, ``imgcls``, the history, the benchmarks).

Qt-free and TensorFlow-free: importing this module costs nothing.
"""

DEFAULT_SEED: int = 1337
"""The seed of the split, the initialisation and the shuffles when none is given."""
