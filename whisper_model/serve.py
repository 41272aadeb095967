"""``python -m whisper_model.serve``: the transcription server in ``whisper_model.server.main``."""
import sys

from .server.main import main

if __name__ == "__main__":
    sys.exit(main())
