"""Tests for the process rig's log reading (gateway_stats.testing.procs)."""

from __future__ import annotations

from pathlib import Path

from gateway_stats.testing.procs import complete_lines


def test_complete_lines_leaves_a_partly_flushed_last_line_for_the_next_read(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text('{"a":1}\n\n{"b":2}\n{"ai_log":"{\\"chat')  # Envoy flushed mid-line
    assert complete_lines(log) == ['{"a":1}', '{"b":2}']
    with log.open("a") as f:
        f.write('_id\\":\\"x\\"}"}\n')
    assert complete_lines(log)[-1] == '{"ai_log":"{\\"chat_id\\":\\"x\\"}"}'


def test_complete_lines_of_a_log_not_written_yet_is_empty(tmp_path: Path) -> None:
    assert complete_lines(tmp_path / "missing.log") == []
