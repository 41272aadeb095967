"""Prometheus metrics of one server (its own registry, so that several apps can live in one process).

    whisper_requests_total{endpoint,status}   requests answered, by HTTP status
    whisper_request_seconds{endpoint}         latency of the requests answered with 200 (until the last byte)
    whisper_queue_seconds                     from a request's audio being queued to its first window's round
    whisper_queue_depth                       requests waiting for a row of the batch
    whisper_batch_rows / whisper_batch_size   rows in the running batch / the scheduler's batch size
    whisper_batch_occupancy                   per decoded window: rows of the batch in use / batch size
    whisper_in_flight                         requests admitted and not answered (audio decoding included)
    whisper_rejected_total{reason}            queue_full, too_large, unauthorized, timeout, too_many_sessions,
                                              slow_client (a realtime client that stopped reading)
    whisper_cancelled_total                   requests whose rows were dropped (client gone, timeout)
    whisper_audio_seconds_total, whisper_windows_total
    whisper_realtime_sessions                 /v1/realtime sessions open
    whisper_realtime_items_total{outcome}     realtime items transcribed: completed, failed
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300, 600)
OCCUPANCY_BUCKETS = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)


class Metrics:
    def __init__(self, batch_size: int):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("whisper_requests", "Requests answered", ["endpoint", "status"], registry=r)
        self.latency = Histogram("whisper_request_seconds", "Latency of successful requests", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.queue_seconds = Histogram("whisper_queue_seconds", "Time from queued to the first round",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("whisper_queue_depth", "Requests waiting for a row", registry=r)
        self.rows = Gauge("whisper_batch_rows", "Rows of the running batch in use", registry=r)
        Gauge("whisper_batch_size", "Rows of the batch", registry=r).set(batch_size)
        self.occupancy = Histogram("whisper_batch_occupancy", "Share of the batch in use, per decoded window",
                                   buckets=OCCUPANCY_BUCKETS, registry=r)
        self.in_flight = Gauge("whisper_in_flight", "Requests admitted and not answered", registry=r)
        self.rejected = Counter("whisper_rejected", "Requests refused", ["reason"], registry=r)
        self.cancelled = Counter("whisper_cancelled", "Requests whose rows were dropped", registry=r)
        self.audio_seconds = Counter("whisper_audio_seconds", "Seconds of audio transcribed", registry=r)
        self.windows = Counter("whisper_windows", "30 s windows decoded", registry=r)
        self.realtime_sessions = Gauge("whisper_realtime_sessions", "Realtime sessions open", registry=r)
        self.realtime_items = Counter("whisper_realtime_items", "Realtime items transcribed", ["outcome"],
                                      registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["Metrics"]
