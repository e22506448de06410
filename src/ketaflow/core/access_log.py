"""Keeping PHI and credentials out of the server's access log.

A search's query string can hold a name or a birth date, and a patient's questionnaire link
carries its token in the path (`/q/<token>`): uvicorn would log both. This filter drops query
strings and masks link tokens in every access-log line."""

from __future__ import annotations

import logging
import re

QUESTIONNAIRE_PATH_PREFIX = "/q/"
# "/q/" anywhere, any case, after any run of slashes: "//q/<token>", "/Q/<token>" and a path
# under a mount prefix ("/clinic/q/<token>") carry a token too, even when they are a 404
_TOKEN_SEGMENT = re.compile(r"/+q/", re.IGNORECASE)


def redact_path(path: str) -> str:
    path = path.split("?", 1)[0]
    found = _TOKEN_SEGMENT.search(path)
    if found:
        return path[: found.start()] + QUESTIONNAIRE_PATH_PREFIX + "[token]"
    return path


class RedactAccessLog(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn's access record args: (client, method, path, http version, status)
        if isinstance(record.args, tuple) and len(record.args) >= 3:
            args = list(record.args)
            args[2] = redact_path(str(args[2]))
            record.args = tuple(args)
        return True


def install_access_log_redaction(logger_name: str = "uvicorn.access") -> None:
    """Idempotent; uvicorn's logging setup keeps the filters a logger already has."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactAccessLog) for f in logger.filters):
        logger.addFilter(RedactAccessLog())
