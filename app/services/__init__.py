"""Qt-free use cases: the only code that uses both database/ and inference/."""
