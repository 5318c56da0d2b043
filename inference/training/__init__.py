"""Datasets, losses, training loops and metrics for the three families."""
