"""The ext_proc answers as protobuf wire bytes.

Every answer gateway-stats sends is CONTINUE with no mutation: an empty HeadersResponse or
BodyResponse for the phase, sometimes dynamic metadata (a Struct holding our namespace), sometimes
a mode override turning the call's phases off. The plain ones are constants, encoded once (no
protobuf object per message); the metadata ones are built and serialised here. The gRPC method is
registered with bytes as its response type (no serializer), see servicer.py.
"""

from __future__ import annotations

from gateway_stats._proto.envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2 as pm
from gateway_stats._proto.envoy.service.ext_proc.v3 import external_processor_pb2 as pb

# ProcessingResponse field numbers (envoy/service/ext_proc/v3/external_processor.proto).
PHASE_FIELD = {
    "request_headers": 1,
    "response_headers": 2,
    "request_body": 3,
    "response_body": 4,
    "request_trailers": 5,
    "response_trailers": 6,
}
_DYNAMIC_METADATA = 8

# CONTINUE per phase: field <n>, length 0 (an empty HeadersResponse / BodyResponse / TrailersResponse).
CONTINUE: dict[str, bytes] = {phase: bytes([n << 3 | 2, 0]) for phase, n in PHASE_FIELD.items()}

_SKIP, _NONE = pm.ProcessingMode.SKIP, pm.ProcessingMode.NONE
# Nothing more to watch (path or content type not observed, or the call is shed): Envoy stops
# sending this call's phases. A mode override replaces the whole mode, so every field is set.
ALL_OFF = pm.ProcessingMode(
    request_header_mode=_SKIP,
    response_header_mode=_SKIP,
    request_body_mode=_NONE,
    response_body_mode=_NONE,
    request_trailer_mode=_SKIP,
    response_trailer_mode=_SKIP,
)
STOP_AFTER_REQUEST_HEADERS = pb.ProcessingResponse(
    request_headers=pb.HeadersResponse(), mode_override=ALL_OFF
).SerializeToString()
STOP_AFTER_RESPONSE_HEADERS = pb.ProcessingResponse(
    response_headers=pb.HeadersResponse(), mode_override=ALL_OFF
).SerializeToString()


def metadata_answer(phase: str, namespace: str, values: dict[str, str | bytes | int | float]) -> bytes:
    """CONTINUE for `phase` with dynamic metadata `{namespace: {key: value, ...}}` (text or numbers).

    Built with protobuf (upb fills a Struct faster than hand-written encoding in Python) and
    serialised here, so the gRPC layer only ships bytes."""
    resp = pb.ProcessingResponse()
    getattr(resp, phase).SetInParent()
    fields = resp.dynamic_metadata.fields[namespace].struct_value.fields
    for key, value in values.items():
        if isinstance(value, str | bytes):
            fields[key].string_value = value  # bytes: UTF-8 text
        else:
            fields[key].number_value = value
    return resp.SerializeToString()
