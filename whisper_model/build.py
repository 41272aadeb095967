"""``python -m whisper_model.build``: the command line in ``whisper_model.cli.build``."""
import sys

from .cli.build import main

if __name__ == "__main__":
    sys.exit(main())
