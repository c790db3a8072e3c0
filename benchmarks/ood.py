""""None of my classes" on a fixed set: out-of-distribution images flagged vs test images flagged.

    python benchmarks/ood.py --dataset cifar10 [--preset fast_cnn] [--budget 150]
    python benchmarks/ood.py --dataset trashnet [--preset efficientnet_lite0 | fast_cnn --image-size 64]

Trains a model with the project's own ``core.training.train`` under a time budget, then
scores, with each candidate rule fitted on the model's validation split:

- in-distribution: the dataset's own test split (every flag there is a wrong one);
- noise: 500 images of uniform random pixels (seeded);
- blank: 100 solid colours (black, white, greys and random colours; seeded);
- unrelated: real photos of the other dataset (CIFAR-10 model: the 505 TrashNet test
  photos; TrashNet model: 1,000 CIFAR-10 test images, 100 per class).

Rules: the old max-probability threshold (what models without a detector use), and the
detector of ``core.ood`` with each method (Mahalanobis, energy, both combined). The
archives are unpacked from ``../shared/datasets/`` into ``~/.cache/imgcls-desktop/``
(``IMGCLS_BENCH_CACHE`` overrides), never into the repository. Writes a Markdown table
to ``benchmarks/results/`` with the machine and the date.
"""

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from imgcls_desktop.core.defaults import DEFAULT_SEED  # noqa: E402  (after the path is set)

ARCHIVES = {"cifar10": "cifar10-jpg.tar.gz", "trashnet": "trashnet-jpg.tar.gz"}


def unpacked(name):
    """The dataset's root under the benchmark cache, unpacked on first use."""
    from benchmarks import machine

    return machine.cifar10_root() if name == "cifar10" else machine.trashnet_root()


def load_folder_images(paths, size):
    import numpy as np

    from imgcls_desktop.core.images import load_image

    return np.stack([load_image(path, (size, size)) for path in paths])


def fixed_ood_sets(dataset, size):
    """``{name: uint8 images}``: noise, blank and unrelated, the same on every run."""
    import numpy as np

    rng = np.random.default_rng(2026)
    noise = rng.integers(0, 256, (500, size, size, 3), dtype=np.uint8)
    greys = [np.full(3, v) for v in np.linspace(0, 255, 20).astype(int)]
    colours = greys + [rng.integers(0, 256, 3) for _ in range(80)]
    blank = np.stack([np.broadcast_to(np.asarray(c, np.uint8), (size, size, 3)) for c in colours])
    if dataset == "cifar10":
        unrelated_paths = sorted((unpacked("trashnet") / "test").glob("*/*.jpg"))
    else:
        unrelated_paths = []
        for folder in sorted(p for p in (unpacked("cifar10") / "test").iterdir() if p.is_dir()):
            unrelated_paths += sorted(folder.glob("*.jpg"))[:100]
    return {"noise": noise, "blank": blank, "unrelated": load_folder_images(unrelated_paths, size)}


def _train_and_score(args, preset, image_size):
    """Train, then the features and logits of the validation split and of every set."""
    import numpy as np

    from imgcls_desktop.core import ood
    from imgcls_desktop.core.dataset import scan_dataset, split_train_validation
    from imgcls_desktop.core.pipeline import decode_items
    from imgcls_desktop.core.training import TrainingConfig, train

    root = unpacked(args.dataset)
    scan = scan_dataset(root)
    config = TrainingConfig(preset=preset, time_budget=args.budget, image_size=image_size, seed=args.seed)
    started = time.perf_counter()
    result = train(scan, config)
    train_seconds = time.perf_counter() - started
    model, metadata = result.model, result.metadata
    size = metadata["image_size"][0]
    tta = metadata.get("test_time_augmentation")
    # The validation split the model was calibrated on, decoded the way training did.
    _train_items, val_items = split_train_validation(scan, config.validation_split, config.seed)
    x_val, y_val, _ = decode_items(val_items, size)
    x_test, y_test, _ = decode_items(scan.splits[scan.evaluation_split_name()], size)
    sets = {"in-distribution test": x_test, **fixed_ood_sets(args.dataset, size)}
    f_val, l_val = ood.compute_features(model, x_val, tta=tta)
    features = {name: ood.compute_features(model, images, tta=tta) for name, images in sets.items()}
    info = {"sets": list(sets), "y_test": [int(v) for v in y_test], "num_classes": len(result.class_names),
            "size": size, "tta": tta, "temperature": metadata["calibration"]["temperature"],
            "train_seconds": train_seconds, "budget": args.budget,
            "epochs_run": metadata["training"]["epochs_run"]}
    return info, f_val, l_val, np.asarray(y_val), features


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(ARCHIVES), default="cifar10")
    parser.add_argument("--preset", default=None, help="default: fast_cnn (CIFAR-10); "
                        "efficientnet_lite0 if the app has it, else fast_cnn (TrashNet)")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--budget", type=float, default=150.0, help="training seconds (default 150)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--reuse", action="store_true",
                        help="skip training: refit the rules on the features the last run saved")
    args = parser.parse_args(argv)

    import numpy as np
    from benchmarks.machine import CACHE, machine_description, write_results

    from imgcls_desktop.core import ood
    from imgcls_desktop.core.calibration import fit_unknown_threshold, softmax
    from imgcls_desktop.core.models import PRESETS

    preset = args.preset
    if preset is None:
        preset = "efficientnet_lite0" if args.dataset == "trashnet" and "efficientnet_lite0" in PRESETS else "fast_cnn"
    image_size = args.image_size or (64 if args.dataset == "trashnet" and preset == "fast_cnn" else None)
    dump = CACHE / f"ood-{args.dataset}-{preset}-features.npz"
    if args.reuse:
        # The arrays of the last run: the same trained model, for trying other rules.
        saved = np.load(dump, allow_pickle=False)
        info = json.loads(str(saved["info"]))
        f_val, l_val, y_val = saved["f_val"], saved["l_val"], saved["y_val"]
        names = info["sets"]
        features = {name: (saved[f"f_{i}"], saved[f"l_{i}"]) for i, name in enumerate(names)}
        sets = {name: features[name][0] for name in names}
    else:
        info, f_val, l_val, y_val, features = _train_and_score(args, preset, image_size)
        sets = {name: pair[0] for name, pair in features.items()}
        arrays = {"f_val": f_val, "l_val": l_val, "y_val": y_val, "info": json.dumps(info)}
        for i, name in enumerate(features):
            arrays[f"f_{i}"], arrays[f"l_{i}"] = features[name]
        np.savez(dump, **arrays)
    y_test = np.asarray(info["y_test"])
    num_classes = info["num_classes"]
    size, tta, temperature = info["size"], info["tta"], info["temperature"]
    test_accuracy = float(np.mean(features["in-distribution test"][1].argmax(1) == y_test))
    threshold = fit_unknown_threshold(softmax(l_val, temperature), y_val)

    rules = {"max-probability threshold (models without a detector)":
             lambda _features, logits: softmax(logits, temperature).max(1) < threshold}
    fit_seconds = {}
    for method in ood.METHODS:
        began = time.perf_counter()
        detector = ood.fit_detector(f_val, l_val, y_val, num_classes, method=method)
        fit_seconds[method] = time.perf_counter() - began
        rules[f"detector: {method}" + (" (the app's)" if method == ood.DEFAULT_METHOD else "")] = detector.flags

    names = list(sets)
    lines = [f"# Out-of-distribution detection: {args.dataset}, {preset} at {size} px",
             "",
             f"Machine: {machine_description()} (shared with other work while it ran). "
             f"Date: {datetime.date.today().isoformat()}.",
             f"Model: `{preset}`, trained {info['train_seconds']:.0f} s (budget {info['budget']:g} s, "
             f"{info['epochs_run']} epochs) with `core.training.train`; "
             f"test accuracy {test_accuracy:.1%}; TTA: {tta or 'none'}. "
             f"Rules fitted on its validation split ({len(y_val)} images, flag rate target 5%). "
             f"Detector fit: {', '.join(f'{m} {s:.2f} s' for m, s in fit_seconds.items())}.",
             "",
             "Share of each set answered \"none of my classes\" (goal: every OOD column >= 90%, "
             "in-distribution test <= 5%).",
             "",
             "| rule | " + " | ".join(f"{name} ({len(sets[name])})" for name in names)
             + " | all OOD |",
             "| --- | " + " | ".join("---:" for _ in names) + " | ---: |"]
    for rule, flags in rules.items():
        shares = [float(np.mean(flags(*features[name]))) for name in names]
        ood_total = sum(float(np.sum(flags(*features[name]))) for name in names[1:])
        ood_count = sum(len(sets[name]) for name in names[1:])
        lines.append(f"| {rule} | " + " | ".join(f"{share:.1%}" for share in shares)
                     + f" | {ood_total / ood_count:.1%} |")
    lines += ["", "Reproduce: `python benchmarks/ood.py " + " ".join(argv or sys.argv[1:]) + "`"
              + (" (`--reuse`: the rules refitted on the arrays the last full run saved)" if args.reuse else "")
              + "."]
    stem = f"ood-{args.dataset}-{preset}-{datetime.date.today().isoformat()}"
    write_results(stem, lines)


if __name__ == "__main__":
    main()
