"""The PySide6 desktop front end. Imports core; core never imports this."""
