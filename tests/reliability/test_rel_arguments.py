"""Absurd training arguments are refused before any work, with the allowed range; the memory
a run needs is estimated first (issue 17, case 3).

Row "absurd arguments" of ../shared/docs/reliability.md. No test here allocates the memory it
talks about: decoding is replaced by a tripwire, and the machine's available memory is
patched.
"""

import pytest

from imgcls_desktop.cli import main
from imgcls_desktop.core import training
from imgcls_desktop.core.errors import TrainingError
from imgcls_desktop.core.training import TrainingConfig

from synthetic import make_shapes_dataset


class DecodingStarted(Exception):
    pass


@pytest.fixture
def no_work(monkeypatch):
    """Fails the test if training gets as far as decoding an image."""
    def tripwire(*args, **kwargs):
        raise DecodingStarted("decoding started: the arguments were not checked first")

    monkeypatch.setattr(training, "decode_items", tripwire)


@pytest.fixture
def dataset(tmp_path):
    return make_shapes_dataset(tmp_path / "data", num_classes=2, per_class=10, size=16)


@pytest.mark.parametrize("arguments, expected", [
    (["--image-size", "100000"], "and 1024 pixels"),
    (["--preset", "fast_cnn", "--image-size", "1"], "image size must be between 9 and 1024"),
    (["--preset", "tutorial_cnn", "--image-size", "16"], "image size must be between 18 and 1024"),
    (["--epochs", "0"], "epochs must be between 1 and"),
    (["--epochs", "-1"], "epochs must be between 1 and"),
    (["--time-budget", "0"], "time budget must be more than 0"),
    (["--time-budget", "nan"], "time budget must be more than 0"),
    (["--learning-rate", "-1"], "learning rate must be a number above 0"),
    (["--learning-rate", "inf"], "learning rate must be a number above 0"),
    (["--batch-size", "0"], "batch size must be between 1 and"),
    (["--patience", "-1"], "patience must be at least 1 epoch, or off"),
    (["--validation-split", "1"], "validation split must be at least 0 and below 1"),
    (["--validation-split", "-0.1"], "validation split must be at least 0 and below 1"),
    (["--seed", "-5"], "seed must be between 0 and"),
])
def test_absurd_arguments_are_refused_before_any_work(capsys, no_work, dataset, tmp_path,
                                                       arguments, expected):
    out = tmp_path / "m.keras"
    code = main(["train", str(dataset), "--out", str(out), *arguments])
    _, err = capsys.readouterr()
    assert code == 2, err
    assert expected in err
    assert "DecodingStarted" not in err and "unexpected error" not in err
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback
    assert not out.exists()


def test_every_bad_setting_is_named_at_once(capsys, no_work, dataset, tmp_path):
    code = main(["train", str(dataset), "--out", str(tmp_path / "m.keras"),
                 "--epochs", "0", "--learning-rate", "-1", "--batch-size", "0"])
    err = capsys.readouterr().err
    assert code == 2
    for fragment in ("epochs", "learning rate", "batch size"):
        assert fragment in err


@pytest.mark.parametrize("change, expected", [
    (dict(epochs=0), "epochs must be between 1"),
    (dict(time_budget=0.0), "time budget"),
    (dict(learning_rate=-1.0), "learning rate"),
    (dict(learning_rate=float("nan")), "learning rate"),
    (dict(image_size=1), "image size must be between 9 and 1024"),
    (dict(image_size=100_000), "image size must be between 9 and 1024"),
    (dict(batch_size=0), "batch size"),
    (dict(early_stopping_patience=0), "patience"),
    (dict(validation_split=1.0), "validation split"),
])
def test_core_train_refuses_before_any_work(no_work, dataset, change, expected):
    # The window calls core.training.train with its TrainingConfig: the same check applies.
    with pytest.raises(TrainingError, match=expected):
        training.train(dataset, TrainingConfig(**change))


def test_a_run_too_large_for_the_memory_is_refused_with_what_to_change(capsys, monkeypatch, no_work,
                                                                       dataset, tmp_path):
    from imgcls_desktop.core import run_checks

    monkeypatch.setattr(run_checks, "available_memory_bytes", lambda: 600 * 1024**2)
    out = tmp_path / "m.keras"
    code = main(["train", str(dataset), "--out", str(out), "--preset", "small_cnn",
                 "--image-size", "1024", "--batch-size", "64"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "needs about" in err and "600 MB available" in err
    assert "smaller image size" in err and "smaller batch size" in err
    assert not out.exists()
    # The same run at the preset's size fits in the same memory.
    estimate = run_checks.check_training_run(TrainingConfig(), 20, available_bytes=600 * 1024**2)
    assert estimate.total_bytes < 600 * 1024**2


def test_core_train_refuses_a_run_too_large_for_the_memory(monkeypatch, no_work, dataset):
    from imgcls_desktop.core import run_checks

    monkeypatch.setattr(run_checks, "available_memory_bytes", lambda: 200 * 1024**2)
    with pytest.raises(TrainingError, match="needs about .* of memory"):
        training.train(dataset, TrainingConfig(preset="mobilenet_v2", image_size=1024, weights=None,
                                               fine_tune_epochs=5))


def test_estimate_counts_what_stays_in_memory_not_what_goes_to_the_disk_cache(monkeypatch):
    from imgcls_desktop.core import pipeline, run_checks

    monkeypatch.setattr(pipeline, "_MEMORY_LIMIT_BYTES", 100 * 1024**2)
    config = TrainingConfig(preset="small_cnn", image_size=64, validation_split=0.0)
    image = 64 * 64 * 3
    small = run_checks.estimate_memory(config, 1000)  # 12 MB: in memory (array + tf.data copy)
    assert small.decoded_bytes == 2 * 1000 * image and small.disk_cache_bytes == 0
    large = run_checks.estimate_memory(config, 100_000)  # 1.2 GB: goes to the disk cache
    assert large.decoded_bytes == 0 and large.disk_cache_bytes == 100_000 * image
    assert large.total_bytes < small.total_bytes + 1024**2  # only batches come back to memory


def test_a_disk_cache_larger_than_the_free_disk_is_refused(monkeypatch):
    from imgcls_desktop.core import pipeline, run_checks

    monkeypatch.setattr(pipeline, "_MEMORY_LIMIT_BYTES", 1024**2)
    config = TrainingConfig(preset="small_cnn", image_size=256)
    with pytest.raises(TrainingError, match="disk cache"):
        run_checks.check_training_run(config, 10_000, available_bytes=64 * 1024**3,
                                      free_disk_bytes=100 * 1024**2)


@pytest.mark.parametrize("preset, images, size, measured_mb", [
    # benchmarks/results/speed-2026-12-02.md: fast_cnn on CIFAR-10, peak RSS 1545 MB.
    ("fast_cnn", 50_000, 32, 1545),
    # benchmarks/results/memory-large-2026-12-02.md: MobileNetV2, 20,000 photos at 224, 1953 MB.
    ("mobilenet_v2", 20_000, 224, 1953),
])
def test_the_estimate_stays_near_measured_runs(preset, images, size, measured_mb):
    from imgcls_desktop.core import run_checks

    # Low enough never to refuse a run that was measured to fit; not absurdly low.
    estimate = run_checks.estimate_memory(TrainingConfig(preset=preset, image_size=size), images)
    assert 0.3 * measured_mb < estimate.total_bytes / 1024**2 < 1.5 * measured_mb


def test_available_memory_is_read_from_the_machine():
    from imgcls_desktop.core import run_checks

    available = run_checks.available_memory_bytes()
    assert available is None or available > 16 * 1024**2
