"""The Train view follows the open folder's recommendation until the user changes a setting;
another folder starts afresh; Train from anywhere shows the Train view."""

import pytest

from imgcls_desktop.core.dataset import scan_dataset
from imgcls_desktop.core.training import TrainingConfig
from imgcls_desktop.gui.main_window import TAB_DATASET, TAB_TRAIN
from imgcls_desktop.gui.training_panel import TrainingPanel

from synthetic import make_shapes_dataset


@pytest.fixture(scope="module")
def thumbnails_scan(shapes_dataset):
    return scan_dataset(shapes_dataset, find_duplicates=False)


@pytest.fixture(scope="module")
def photos_scan(tmp_path_factory):
    root = make_shapes_dataset(tmp_path_factory.mktemp("photos"), num_classes=2, per_class=8, size=96, seed=2)
    return scan_dataset(root, find_duplicates=False)


def _points_drawn(chart):
    """Points on every curve of the live chart, once the chart has drawn what it holds."""
    chart.flush()
    return sum(chart.point_count(metric, series)
               for metric in ("loss", "accuracy") for series in ("train", "train_epoch", "val"))


def _open(qtbot, panel, scan):
    with qtbot.waitSignal(panel.recommendation_ready, timeout=30000) as ready:
        panel.set_dataset(scan)
    return ready.args[0]


def test_settings_follow_each_folder_until_the_user_changes_one(qtbot, thumbnails_scan, photos_scan):
    panel = TrainingPanel()
    qtbot.addWidget(panel)
    recommendation = _open(qtbot, panel, thumbnails_scan)
    assert (recommendation.preset, recommendation.image_size) == ("fast_cnn", 32)
    config = panel.config()
    assert config.preset == "fast_cnn" and config.image_size == 32
    assert config.time_budget == recommendation.time_budget and config.epochs is None
    assert panel.recommendation_box.isVisibleTo(panel)
    text = panel.recommendation_label.text()
    assert "Fast CNN" in text and "These settings follow it" in text
    assert not panel.use_recommended_button.isEnabled()

    panel.image_size_spin.setValue(48)  # the user's own choice
    assert "You changed the settings" in panel.recommendation_label.text()
    assert panel.use_recommended_button.isEnabled()
    panel.set_dataset(thumbnails_scan)  # a rescan of the same folder keeps it
    assert panel.config().image_size == 48

    recommendation = _open(qtbot, panel, photos_scan)  # another folder: its own recommendation
    assert recommendation.preset == "efficientnet_lite0"
    config = panel.config()
    assert (config.preset, config.image_size, config.time_budget) == ("efficientnet_lite0", 224, None)
    assert config.epochs == 30 and config.validation_split == pytest.approx(0.2)

    panel.preset_combo.setCurrentIndex(panel.preset_combo.findData("small_cnn"))
    assert panel.config().preset == "small_cnn"
    panel.use_recommended_button.click()
    assert panel.config().preset == "efficientnet_lite0"
    assert "These settings follow it" in panel.recommendation_label.text()


def test_a_recommendation_never_overrides_a_configuration_set_on_purpose(qtbot, thumbnails_scan):
    panel = TrainingPanel()
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.recommendation_ready, timeout=30000):
        panel.set_dataset(thumbnails_scan)
        # Set before the recommendation arrives, and equal to the defaults the widgets show.
        panel.set_config(TrainingConfig(preset="fast_cnn", epochs=10))
    config = panel.config()
    assert config.epochs == 10 and config.time_budget is None


def test_train_shows_the_train_view_and_another_folder_clears_the_last_run(
        qtbot, window, shapes_split_dataset, photos_scan, error_dialogs):
    with qtbot.waitSignals([window.engine_ready, window.dataset_opened], timeout=120000):
        window.start(shapes_split_dataset)
    assert window.tabs.currentIndex() == TAB_DATASET
    window.training.set_config(TrainingConfig(preset="small_cnn", epochs=1, batch_size=16, seed=1))
    with qtbot.waitSignal(window.evaluation_finished, timeout=300000):
        window.train_action.trigger()  # the menu's Train, from the Dataset view
        assert window.tabs.currentIndex() == TAB_TRAIN
    panel = window.training
    assert _points_drawn(panel.chart) > 0 and panel.status_label.text()

    with qtbot.waitSignal(panel.recommendation_ready, timeout=120000):
        window.open_dataset(photos_scan.root)
    assert _points_drawn(panel.chart) == 0  # the last run's curves are gone
    assert panel.status_label.text() == "" and panel.progress_bar.format() == "Not training"
    assert panel.config().preset == "efficientnet_lite0"
    assert error_dialogs == []
