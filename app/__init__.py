"""The review station application: services (Qt-free), worker, GUI."""
__version__ = "0.1.0"
