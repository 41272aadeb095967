"""Command lines (floor 6): ``run`` (transcription), ``build`` (engine directories), ``summarize`` (WER tables)."""
