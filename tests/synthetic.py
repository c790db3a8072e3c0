"""Tiny, seeded, learnable image datasets made on the fly for tests.

Each class is a shape of its own colour on a noisy background, so a small CNN
learns it in a few epochs while chance stays at 1 / num_classes.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASS_STYLES = [
    ("circle", (220, 40, 40)),
    ("square", (40, 200, 40)),
    ("triangle", (40, 60, 220)),
    ("cross", (230, 200, 30)),
    ("ring", (200, 40, 200)),
]


def make_shape_image(kind, colour, size, rng):
    background = rng.integers(0, 90, size=(size, size, 3), dtype=np.uint8)
    image = Image.fromarray(background, "RGB")
    draw = ImageDraw.Draw(image)
    r = int(size * rng.uniform(0.22, 0.34))
    cx = int(size / 2 + rng.integers(-size // 8, size // 8 + 1))
    cy = int(size / 2 + rng.integers(-size // 8, size // 8 + 1))
    jitter = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in colour)
    box = (cx - r, cy - r, cx + r, cy + r)
    if kind == "circle":
        draw.ellipse(box, fill=jitter)
    elif kind == "square":
        draw.rectangle(box, fill=jitter)
    elif kind == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=jitter)
    elif kind == "cross":
        w = max(1, r // 3)
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=jitter)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=jitter)
    else:
        draw.ellipse(box, outline=jitter, width=max(1, r // 3))
    return image


def make_shapes_dataset(root, num_classes=3, per_class=20, size=32, seed=0,
                        layout="flat", test_per_class=8, extension=".png"):
    """Write a class-folder dataset under ``root`` and return its path.

    layout="flat": root/<class>/*.png; layout="split": root/train/<class>, root/test/<class>.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    splits = {"": per_class} if layout == "flat" else {"train": per_class, "test": test_per_class}
    for split, count in splits.items():
        for kind, colour in CLASS_STYLES[:num_classes]:
            folder = root / split / kind if split else root / kind
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                make_shape_image(kind, colour, size, rng).save(folder / f"{kind}_{i:03d}{extension}")
    return root
