"""Collect Python's cyclic garbage on the GUI thread only (pyqtgraph's GarbageCollector).

A collection runs in whichever thread happens to allocate when a threshold is crossed.
When that was a worker thread and the garbage held a Qt object, its C++ destructor ran on
the wrong thread and the process crashed ("Garbage-collecting" in a job thread, seen once
in the test suite). Automatic collection is switched off and this timer collects, by the
same thresholds, on the GUI thread, where Qt objects may be destroyed.
"""

import gc

from PySide6.QtCore import QObject, QTimer, Slot


class GarbageCollector(QObject):
    def __init__(self, parent=None, interval_ms=1000):
        super().__init__(parent)
        self.thresholds = gc.get_threshold()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.check)
        self.timer.start(interval_ms)
        gc.disable()

    @Slot()
    def check(self):
        count0, count1, count2 = gc.get_count()
        if count0 > self.thresholds[0]:
            generation = 0
            if count1 > self.thresholds[1]:
                generation = 2 if count2 > self.thresholds[2] else 1
            gc.collect(generation)

    def stop(self):
        """Give collection back to Python (tests call this between Qt tests)."""
        self.timer.stop()
        gc.enable()
