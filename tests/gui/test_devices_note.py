"""The status bar says which devices train, once the engine has loaded (issue 14)."""

from imgcls_desktop.core.distribute import cpu_cores


def test_status_bar_names_the_training_devices(qtbot, window, shapes_dataset):
    with qtbot.waitSignals([window.engine_ready, window.dataset_opened], timeout=120000):
        window.start(shapes_dataset)
    text = window.engine_label.text()
    cores = cpu_cores()
    assert text.startswith("Engine ready (TensorFlow ")
    assert text.endswith(f"trains on CPU, {cores} core{'s' if cores != 1 else ''}")
    assert "devices" not in window.versions  # the versions stay the library versions


def test_saved_settings_never_make_the_window_train_multi_worker():
    from imgcls_desktop.gui.main_window import _config_from_dict

    config = _config_from_dict({"preset": "tutorial_cnn", "epochs": 3, "distribute": "multi-worker"})
    assert config.distribute == "auto" and config.epochs == 3
