"""The service under every front end (the command line, the server, the Ray workers): a model loaded from a
spec by one rule (``loading``), the thread that owns a scheduler (``worker``), and a stream's events gathered into
its result (``results``, on the floor of ``transcribe``, which uses it too)."""
from ..results import Results, StreamResult
from .loading import ModelSpec, check_device, english_only_language, load_model, model_source, resolve_device
from .worker import Closing, Stream, StreamWorker

__all__ = ["Closing", "ModelSpec", "Results", "Stream", "StreamResult", "StreamWorker", "check_device",
           "english_only_language", "load_model", "model_source", "resolve_device"]
