"""The operator's log setup: one JSON object per line, and quiet noisy libraries."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from storage_token.process.logs import JsonFormatter, configure_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root, kopf_objects = logging.getLogger(), logging.getLogger("kopf.objects")
    saved = (root.handlers[:], root.level, kopf_objects.level)
    yield
    root.handlers[:], _, _ = saved
    root.setLevel(saved[1])
    kopf_objects.setLevel(saved[2])


def test_json_logs_are_one_object_per_line() -> None:
    record = logging.LogRecord("storage_token.x", logging.WARNING, __file__, 1, "issued %s", ("k1",), None)
    line = JsonFormatter().format(record)
    assert json.loads(line) | {"time": None} == {
        "time": None,
        "level": "warning",
        "logger": "storage_token.x",
        "message": "issued k1",
    }


def test_kopf_per_object_success_lines_only_at_debug() -> None:
    configure_logging("plain", "INFO")
    kopf_objects = logging.getLogger("kopf.objects")
    assert not kopf_objects.isEnabledFor(logging.INFO) and kopf_objects.isEnabledFor(logging.WARNING)

    configure_logging("plain", "DEBUG")
    assert kopf_objects.isEnabledFor(logging.INFO)
