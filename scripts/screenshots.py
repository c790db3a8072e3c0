"""Take the README's screenshots from the real application window.

    xvfb-run -s "-screen 0 1280x860x24" .venv/bin/python scripts/screenshots.py docs/screenshots

Opens the bundled sample dataset, trains the default preset for a few epochs through the
Train button, waits for the evaluation, drops test images on the Predict view, and saves
one PNG of the whole screen per view (so menus, title bar and status bar are included).
"""

import os
import sys
from pathlib import Path


def main(out_dir, epochs=None):
    os.environ.setdefault("IMGCLS_DATA_DIR", str(Path(out_dir).resolve() / ".userdata"))
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication, QPushButton

    from imgcls_desktop.core.training import TrainingConfig
    from imgcls_desktop.gui.main_window import MainWindow
    from imgcls_desktop.gui.self_test import drop_files, wait_for
    from imgcls_desktop.resources import resource_path, sample_dataset_path

    app = QApplication(sys.argv[:1])
    app.setWindowIcon(QIcon(str(resource_path("icon.png"))))
    window = MainWindow()
    window.resize(1200, 800)
    window.move(20, 20)
    window.show()
    window.start(sample_dataset_path())
    wait_for(window.engine_ready, 120, "engine")
    if window.scan is None:
        wait_for(window.dataset_opened, 120, "dataset")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def shoot(name):
        for _ in range(20):
            app.processEvents()
        screen = app.primaryScreen()
        geometry = window.frameGeometry()
        picture = screen.grabWindow(0, geometry.x(), geometry.y(), geometry.width(), geometry.height())
        picture.save(str(out / f"{name}.png"))
        print("saved", out / f"{name}.png")

    window.tabs.setCurrentIndex(0)
    shoot("dataset")
    window.tabs.setCurrentIndex(1)
    # What a new user gets from pressing Train: the settings recommended for the folder.
    if window.training.recommendation is None:
        wait_for(window.training.recommendation_ready, 60, "the recommendation")
    if epochs:
        window.training.epochs_spin.setValue(epochs)
    shoot("recommendation")
    window.findChild(QPushButton, "trainButton").click()
    # A picture mid-training shows the live chart and the progress bar at work.
    while window.training.chart.point_count("loss", "val") < 3:
        wait_for(window.training.training_progressed, 120, "progress")
    window.tabs.setCurrentIndex(1)
    shoot("training")
    wait_for(window.evaluation_finished, 600, "evaluation")
    shoot("evaluation")
    eval_items = window.scan.splits["test"]
    files = [item.path for item in eval_items[::12]][:8]
    window.tabs.setCurrentIndex(3)
    drop_files(window.prediction, files)
    wait_for(window.prediction.predictions_ready, 120, "predictions")
    shoot("prediction")
    # Heat maps in the Predict view, then the robustness check (issue 7).
    window.prediction.set_heatmaps_enabled(True)
    while window.prediction.is_explaining():
        wait_for(window.prediction.heatmaps_ready, 120, "heat maps")
    shoot("prediction-heatmap")
    window.prediction.set_heatmaps_enabled(False)
    window.check_robustness_action.trigger()
    wait_for(window.robustness.check_finished, 300, "robustness check")
    shoot("robustness")
    # Run history (issue 7): the run above was recorded; a second, shorter one to compare with.
    window.training.set_config(TrainingConfig(preset="efficientnet_lite0", epochs=3, seed=2))
    window.tabs.setCurrentIndex(1)
    window.findChild(QPushButton, "trainButton").click()
    wait_for(window.history.recorder.recorded, 600, "the second run recorded")
    window.tabs.setCurrentWidget(window.history)
    window.history.refresh()
    wait_for(window.history.runs_listed, 60, "the run list")
    window.history.select_runs(window.history.run_ids()[:2])
    shoot("history")
    # Dataset doctor (issue 7): duplicates, leakage, class balance and a mislabel search.
    from time import sleep

    doctor = window.browser.doctor
    window.tabs.setCurrentIndex(0)
    window.browser.show_doctor()
    if doctor.report() is None:
        wait_for(doctor.report_ready, 120, "the dataset check")
    doctor.find_mislabels()
    wait_for(doctor.mislabels_found, 600, "the mislabel search")
    while doctor.is_busy():  # the suspects' thumbnails
        app.processEvents()
        sleep(0.02)
    shoot("doctor")
    # -- Fix the data (issue 7): move / quarantine from the gallery, on a scratch copy ----
    fix_data_scratch = shoot_fix_data(app, window, shoot)
    # -- end of Fix the data -------------------------------------------------------------
    window.close()
    fix_data_scratch.cleanup()
    return 0


def shoot_fix_data(app, window, shoot):
    """Fix the data: the gallery's context menu and the moved-images bar (fix-data.png).

    Moves real files, so it works on a scratch copy of the sample, never the bundled one:
    opens the copy, evaluates the current model on it, moves one misclassified image to
    its predicted class and quarantines another. Returns the scratch folder (clean it up
    once the window is closed).
    """
    import shutil
    import tempfile

    from imgcls_desktop.gui.self_test import wait_for
    from imgcls_desktop.resources import sample_dataset_path

    scratch = tempfile.TemporaryDirectory(prefix="imgcls-fix-data-")
    copy = Path(shutil.copytree(sample_dataset_path(), Path(scratch.name) / "sample"))
    window.open_dataset(copy)
    wait_for(window.dataset_opened, 120, "the scratch copy of the sample")
    window.evaluate_current()
    wait_for(window.evaluation_finished, 300, "the evaluation of the copy")
    view = window.evaluation
    if getattr(window, "evaluate_tabs", None) is not None:
        window.evaluate_tabs.setCurrentWidget(view)
    mistakes = view.report.misclassified()
    window.move_image(mistakes[0]["path"], mistakes[0]["predicted"])
    wait_for(window.dataset_opened, 120, "the rescan after a move")
    window.move_image(mistakes[1]["path"], "")
    wait_for(window.dataset_opened, 120, "the rescan after a quarantine")
    gallery = view.gallery
    gallery.setCurrentRow(1)
    for _ in range(20):
        app.processEvents()
    menu = view.image_menu([gallery.paths()[1]], gallery)
    corner = gallery.visualItemRect(gallery.item(1)).center()
    menu.popup(gallery.viewport().mapToGlobal(corner))
    move_action = menu.actions()[0]
    menu.setActiveAction(move_action)
    submenu = move_action.menu()
    submenu.popup(menu.mapToGlobal(menu.actionGeometry(move_action).topRight()))
    shoot("fix-data")
    submenu.close()
    menu.close()
    return scratch


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"))
