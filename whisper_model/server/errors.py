"""Errors as the OpenAI API gives them: an HTTP status and ``{"error": {"message", "type", "param", "code"}}``."""
from __future__ import annotations

from typing import Optional

from starlette.responses import JSONResponse

from ..errors import AudioError, DecodingError, OptionError

TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
         413: "invalid_request_error", 429: "rate_limit_error", 503: "server_error", 504: "timeout_error",
         500: "server_error"}


class ApiError(Exception):
    """A request that gets ``status`` with ``message``; ``param``: the form field at fault, if one is."""

    def __init__(self, status: int, message: str, *, param: Optional[str] = None, code: Optional[str] = None,
                 headers: Optional[dict] = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": TYPES.get(self.status, "invalid_request_error"),
                          "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def from_failure(error: Exception) -> ApiError:
    """The ``ApiError`` of a stream that failed in the scheduler (``scheduler.Failed.error``)."""
    if isinstance(error, AudioError):
        return ApiError(400, f"file: {error}", param="file", code="invalid_audio")
    if isinstance(error, OptionError):
        return ApiError(400, str(error))
    if isinstance(error, DecodingError):
        return ApiError(500, f"decoding failed: {error}", code="decoding_error")
    return ApiError(500, f"{type(error).__name__}: {error}")


__all__ = ["ApiError", "from_failure"]
