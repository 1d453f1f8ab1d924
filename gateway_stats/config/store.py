"""The live config of a running sidecar: reloaded when the file changes (a ConfigMap's symlink swap
included, since the file is stat'ed through its links), keeping the last good config on error. The
price files the config lists (`gateway_stats.pricing.files`) are watched too: a change to one reloads
the whole config, so prices are validated and swapped with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Mapping

import yaml

from gateway_stats.config.documents import load_config
from gateway_stats.config.model import Config
from gateway_stats.config.presets import default_config
from gateway_stats.config.schema import ConfigError

log = logging.getLogger(__name__)

# -------------------------------------------------------------------------------------------- reload


def with_environment(config: Config, environ: Mapping[str, str]) -> Config:
    """The config as a running sidecar applies it: `tracing.enabled` decided with the OTEL_* variables
    (TracingConfig.resolved), so everything downstream reads a plain true/false."""
    ext = config.extensions
    tracing = ext.tracing.resolved(environ)
    if tracing == ext.tracing:
        return config
    return dataclasses.replace(config, extensions=dataclasses.replace(ext, tracing=tracing))


class ConfigStore:
    """Holds the current Config and reloads it when the file changes, keeping the last good one.

    The first load happens in the constructor and raises ConfigError: a broken config at startup is
    fatal, a broken config on reload is only logged and counted.
    """

    def __init__(
        self,
        path: str | None,
        on_change: Callable[[Config], None] | None = None,
        poll_interval: float = 2.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.path = path
        self.environ = os.environ if environ is None else environ
        self.on_change = on_change
        self.poll_interval = poll_interval
        self.reloads_ok = 0
        self.reloads_failed = 0
        self.last_error: str | None = None
        self._signature: tuple[object, ...] | None = None
        if path is None:
            self.current = with_environment(default_config(), self.environ)
        else:
            with contextlib.suppress(OSError):  # load_config below reports it
                self._signature = self._stat(path)
            self.current = with_environment(load_config(path), self.environ)
        self._files_signature = self._stat_files(self.current.extensions.pricing.file_paths)

    @staticmethod
    def _stat(path: str) -> tuple[object, ...]:
        st = os.stat(path)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    @classmethod
    def _stat_files(cls, paths: tuple[str, ...]) -> tuple[object, ...]:
        out: list[object] = []
        for p in paths:
            try:
                out.append((p, *cls._stat(p)))
            except OSError as exc:
                out.append((p, "unreadable", exc.errno))
        return tuple(out)

    def _failed(self, message: str) -> None:
        self.reloads_failed += 1
        self.last_error = message
        log.warning("config reload failed, keeping the last good config: %s", message.replace("\n", "; "))

    def check(self) -> bool:
        """Reload if the file changed; True when a new config was installed."""
        if self.path is None:
            return False
        try:
            signature = self._stat(self.path)
        except OSError as exc:
            gone: tuple[object, ...] = ("unreadable", exc.errno)
            if gone != self._signature:
                self._signature = gone
                self._failed(f"{self.path}: cannot stat: {exc.strerror or exc}")
            return False
        files = self._stat_files(self.current.extensions.pricing.file_paths)
        if signature == self._signature and files == self._files_signature:
            return False
        self._signature = signature
        self._files_signature = files
        try:
            config = with_environment(load_config(self.path), self.environ)
        except (ConfigError, OSError, yaml.YAMLError) as exc:
            self._failed(str(exc))
            return False
        paths = config.extensions.pricing.file_paths
        if paths != self.current.extensions.pricing.file_paths:
            self._files_signature = self._stat_files(paths)
        self.current = config
        self.reloads_ok += 1
        self.last_error = None
        log.info("config reloaded from %s", self.path)
        if self.on_change is not None:
            try:
                self.on_change(config)
            except Exception:
                log.exception("config on_change callback failed")
        return True

    async def watch(self) -> None:
        """Call check() every poll_interval seconds until cancelled."""
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                self.check()
            except Exception:  # never let the watcher die
                log.exception("config check failed")
