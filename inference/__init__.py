"""Models and inference: no Qt, no SQLAlchemy (see tests/test_layering.py)."""
