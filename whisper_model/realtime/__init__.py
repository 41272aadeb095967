"""Realtime transcription over OpenAI's Realtime protocol (issue 27): the parts that do not need the server.

    config.py         SessionConfig / TurnDetection: a transcription session's settings (OpenAI's defaults)
    events.py         client events (session.update, input_audio_buffer.append / commit / clear) parsed and
                      validated into dataclasses; ProtocolError carries OpenAI's error shape
    server_events.py  the server events as dicts in the shapes of the ``openai`` package's realtime types
    intake.py         PCM16 at 24 / 16 kHz -> float32 16 kHz samples, resampled as it arrives (PyAV)
    vad_stream.py     server_vad: Silero VAD with its state carried across appends -> speech started / stopped
    input_buffer.py   OpenAI's input audio buffer: appends through intake and VAD -> turn events and committed
                      utterances; the client's commit / clear
    agreement.py      LocalAgreement-2: which words of a growing window's hypotheses are final
    transcript.py     one item's committed texts (a live stream's) -> transcription delta events, then completed
    session.py        RealtimeSession: client events in, server events and committed utterances out (no
                      transport, no model)

Nothing here imports the server's extras (fastapi, uvicorn) or ``openai``: the WebSocket route
(``server.realtime_route``) feeds a RealtimeSession per connection and transcribes its items as the scheduler's
live streams (``server.realtime_items``), whose events ``Transcript`` turns into server events.
"""
