"""PySide6 widgets: they reach data and models only through app.services."""
