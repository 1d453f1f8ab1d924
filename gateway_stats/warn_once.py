"""One warning per kind of trouble, then debug lines: how a background job (the language/topic worker,
Athina forwarding) reports a failure that may repeat for every call without flooding the log."""

from __future__ import annotations

import logging


class WarnOnce:
    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._warned: set[str] = set()

    def __call__(self, kind: str, msg: str) -> None:
        if kind in self._warned:
            self._log.debug(msg)
        else:
            self._warned.add(kind)
            self._log.warning("%s (logged once; further ones at debug level)", msg)
