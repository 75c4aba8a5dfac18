from __future__ import annotations

import json
import logging

from federation.logsetup import ContextFilter, JsonFormatter, request_id_var


def test_json_log_line_carries_the_request_id() -> None:
    record = logging.LogRecord("mosaic.api", logging.INFO, __file__, 1, "grant %s", ("g1",), None)
    token = request_id_var.set("req-123")
    try:
        ContextFilter().filter(record)
    finally:
        request_id_var.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "grant g1" and line["request_id"] == "req-123"
    assert line["level"] == "info" and line["logger"] == "mosaic.api"
