"""The Higress ai-statistics README's first example config, shared by the config and attribute tests."""

from __future__ import annotations

from typing import Any

README_A: dict[str, Any] = {
    "attributes": [
        {
            "key": "question",
            "value_source": "request_body",
            "value": "messages.@reverse.0.content",
            "apply_to_log": True,
        },
        {
            "key": "answer",
            "value_source": "response_streaming_body",
            "value": "choices.0.delta.content",
            "rule": "append",
            "apply_to_log": True,
        },
        {
            "key": "answer",
            "value_source": "response_body",
            "value": "choices.0.message.content",
            "apply_to_log": True,
        },
    ]
}
