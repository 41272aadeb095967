"""``python -m whisper_model.distributed``: batch transcription on Ray (``distributed.command.main``)."""
import sys

from .command import main

if __name__ == "__main__":
    sys.exit(main())
