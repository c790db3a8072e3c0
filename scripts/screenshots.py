"""Take the README's screenshots from the real application window.

    xvfb-run -s "-screen 0 1280x860x24" .venv/bin/python scripts/screenshots.py docs/screenshots

Opens the bundled sample dataset, trains the default preset for a few epochs through the
Train button, waits for the evaluation, drops test images on the Predict view, and saves
one PNG of the whole screen per view (so menus, title bar and status bar are included).
"""

import os
import sys
from pathlib import Path


def main(out_dir, epochs=8):
    os.environ.setdefault("IMGCLS_DATA_DIR", str(Path(out_dir).resolve() / ".userdata"))
    from PySide6.QtWidgets import QApplication, QPushButton

    from imgcls_desktop.core.training import TrainingConfig
    from imgcls_desktop.gui.main_window import MainWindow
    from imgcls_desktop.gui.self_test import drop_files, wait_for
    from imgcls_desktop.resources import resource_path, sample_dataset_path

    from PySide6.QtGui import QIcon

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
    window.training.set_config(TrainingConfig(preset="small_cnn", epochs=epochs, seed=1))
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
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"))
