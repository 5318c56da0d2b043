"""Composition root: ``python main.py [FOLDER]`` opens the review station; subcommands run headless."""
import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main())
