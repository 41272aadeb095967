"""``python -m whisper_model.run``: the command line in ``whisper_model.cli.run``."""
import sys

from .cli.run import main

if __name__ == "__main__":
    sys.exit(main())
