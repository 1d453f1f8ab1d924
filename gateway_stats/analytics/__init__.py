"""Analytics beyond tokens and latency (issue 13): language, topic, feedback, and what joins them.

- `language.py`: the language of the request's last user text (lingua, offline, restricted set,
  confidence threshold; None when unsure);
- `topics.py`: topic rules on words (first match wins, `other` otherwise) and a classifier plug-in;
- `enricher.py`: runs both off the request path, in a child process (lingua holds the GIL while it
  works, which would stall the event loop serving Envoy if it ran in one of our threads);
- `joins.py`: recent calls by response, request and reference id, so feedback finds the call it rates;
- `feedback.py`: the feedback hub (join, counter, consumers) and the `POST /v1/feedback` handler.

What is captured on the request path lives in the core (`core/capture.py`, `core/feedback.py`); the
settings in `config/analytics.py`; the Athina forwarding sink in `sinks/athina.py`.

May import the core, the config and the standard library; lingua only inside functions (optional
extra `gateway-stats[language]`). Never grpc or asyncio: the side HTTP server calls in with plain bytes.
"""
