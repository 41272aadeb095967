"""An OpenAI-compatible transcription server over one continuously batched ``Scheduler`` (issue 13).

    python -m whisper_model.serve --model base --port 8000
    curl http://127.0.0.1:8000/v1/audio/transcriptions -F file=@clip.wav -F model=base -F response_format=srt

``app.create_app(ServedModel(...), ServerConfig(...))`` is the ASGI app; ``worker.BatchWorker`` the thread
that owns the scheduler; ``forms`` reads a request, ``responses`` writes one, ``limits`` holds the API key,
the upload limit and the bounded queue, ``metrics`` the Prometheus metrics, ``main`` the command line;
``realtime_route`` / ``realtime_items`` the ``/v1/realtime`` WebSocket (OpenAI's Realtime transcription),
``serving`` the uvicorn server that ends its sessions on shutdown.
"""
from .app import create_app
from .config import ServedModel, ServerConfig

__all__ = ["ServedModel", "ServerConfig", "create_app"]
