"""API shapes: one module per provider API, a small interface they share, and the recogniser.

`recognise.py` picks the shape of a call from its path (and, failing that, its body); each shape module
reads answer, reasoning, tool calls and finish reasons from a whole response body or from one stream
event. Usage and model rules shared by every shape live in `gateway_stats.core.usage`.

Adding an API (Bedrock, Cohere, …) means adding one module here and listing it in `recognise.py`.
Same import rule as `gateway_stats.core`: no grpc, asyncio, prometheus_client, opentelemetry, uvloop or
socket.
"""

from gateway_stats.providers import gemini as _gemini
from gateway_stats.providers.base import UNKNOWN, Kind, Output, Shape
from gateway_stats.providers.gemini import path_model as gemini_path_model
from gateway_stats.providers.recognise import kind_from_body, kind_from_path, response_body, stream_event

GEMINI = _gemini.KIND

__all__ = [
    "GEMINI",
    "UNKNOWN",
    "Kind",
    "Output",
    "Shape",
    "gemini_path_model",
    "kind_from_body",
    "kind_from_path",
    "response_body",
    "stream_event",
]
