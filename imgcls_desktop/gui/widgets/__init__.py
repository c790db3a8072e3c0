"""What more than one view uses: the thumbnail grid and decoder, the lazy matplotlib canvas,
the error dialog.

A view (``gui/*_view.py``, ``dataset_browser``, ``prediction_pane``, ``training_panel``)
builds itself from these and from Qt's own; a widget here knows no view.
"""
