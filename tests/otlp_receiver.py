"""A tiny OTLP trace receiver for tests: OTLP/gRPC and OTLP/HTTP (protobuf) on loopback.

It decodes `ExportTraceServiceRequest`s with opentelemetry-proto (installed with the exporters) and
keeps every span, flattened, so a test can look at Envoy's spans and ours side by side.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as ts_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from gateway_stats.testing.procs import free_port

SPAN_KIND = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    if kind is None:
        return None
    return getattr(v, kind)


@dataclass
class Span:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status: str
    status_message: str
    transport: str  # "grpc" or "http"
    resource: dict[str, Any] = field(default_factory=dict)


class OtlpReceiver:
    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.requests = {"grpc": 0, "http": 0}
        self._lock = threading.Lock()
        self.grpc_port = free_port()
        self.http_port = free_port()
        self._grpc: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def take(self, req: ts.ExportTraceServiceRequest, transport: str) -> None:
        out = []
        for rs in req.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    out.append(
                        Span(
                            service=str(resource.get("service.name", "")),
                            name=s.name,
                            kind=SPAN_KIND.get(s.kind, str(s.kind)),
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                            attributes={kv.key: _value(kv.value) for kv in s.attributes},
                            status=STATUS.get(s.status.code, str(s.status.code)),
                            status_message=s.status.message,
                            transport=transport,
                            resource=resource,
                        )
                    )
        with self._lock:
            self.spans.extend(out)
            self.requests[transport] += 1

    def snapshot(self) -> list[Span]:
        with self._lock:
            return list(self.spans)

    def start(self) -> OtlpReceiver:
        receiver = self

        class TraceService(ts_grpc.TraceServiceServicer):
            def Export(self, request: ts.ExportTraceServiceRequest, context: Any) -> Any:
                receiver.take(request, "grpc")
                return ts.ExportTraceServiceResponse()

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        ts_grpc.add_TraceServiceServicer_to_server(TraceService(), server)
        server.add_insecure_port(self.grpc_address)
        server.start()
        self._grpc = server

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                enc = (self.headers.get("content-encoding") or "").lower()
                if enc == "gzip":
                    body = gzip.decompress(body)
                elif enc == "deflate":
                    body = zlib.decompress(body)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                req = ts.ExportTraceServiceRequest()
                req.ParseFromString(body)
                receiver.take(req, "http")
                payload = ts.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        http = ThreadingHTTPServer(("127.0.0.1", self.http_port), Handler)
        threading.Thread(target=http.serve_forever, name="otlp-http-receiver", daemon=True).start()
        self._http = http
        return self

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(None)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
