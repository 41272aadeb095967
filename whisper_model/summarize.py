"""``python -m whisper_model.summarize``: the command line in ``whisper_model.cli.summarize``."""
import sys

from .cli.summarize import main

if __name__ == "__main__":
    sys.exit(main())
