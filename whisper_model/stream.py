"""``python -m whisper_model.stream``: the realtime streaming client in ``whisper_model.cli.stream``."""
import sys

from .cli.stream import main

if __name__ == "__main__":
    sys.exit(main())
