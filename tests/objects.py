"""Images whose class is decided by one small object at a known place (Grad-CAM tests).

Both classes hold the same square at a random place on random noise; only its colour
decides the class, so the evidence must lie on the square, and the tests know where it is.
The model trained on them is the session fixture ``object_model`` in ``conftest.py``.
"""

import numpy as np
from PIL import Image

SIZE = 32
OBJECT = 10
CLASS_COLOURS = {"blue": (40, 60, 230), "red": (230, 40, 40)}


def make_object_image(colour, rng):
    """A noisy 32x32 image holding the class square; returns (image, (top, left))."""
    pixels = rng.integers(0, 110, size=(SIZE, SIZE, 3)).astype(np.int16)
    top, left = (int(v) for v in rng.integers(0, SIZE - OBJECT + 1, size=2))
    jitter = rng.integers(-20, 21, size=3)
    pixels[top:top + OBJECT, left:left + OBJECT] = np.clip(np.asarray(colour) + jitter, 0, 255)
    return pixels.astype(np.uint8), (top, left)


def make_object_dataset(root, per_class, seed):
    """Write ``per_class`` images of each class under ``root/<class>/`` and return ``root``."""
    rng = np.random.default_rng(seed)
    for name, colour in CLASS_COLOURS.items():
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            image, _box = make_object_image(colour, rng)
            Image.fromarray(image, "RGB").save(folder / f"{name}_{i:03d}.png")
    return root
