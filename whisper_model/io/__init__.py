"""Reading and writing: audio (PyAV, log-mel), the tokenizer and its vocabularies, checkpoints, output files (floor 1)."""
