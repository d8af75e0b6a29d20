"""POST an event to a URL: JSON body, extra headers from a file, an HMAC-SHA256 signature over the exact body bytes
when a secret is set (``X-DeepVA-Watch-Signature: sha256=<hex>``), and the event's stable id in
``X-DeepVA-Watch-Event`` so that a receiver can drop the repeat an at-least-once delivery may bring."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from deepva_watch import log
from deepva_watch.config import ConfigError, HttpAction, read_secret_file

SIGNATURE_HEADER = "X-DeepVA-Watch-Signature"
EVENT_HEADER = "X-DeepVA-Watch-Event"


@dataclass(frozen=True)
class PostResult:
    status: int | None
    """The HTTP status; None when no answer came (refused, timed out)."""
    detail: str

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def worth_retrying(self) -> bool:
        return self.status is None or self.status >= 500 or self.status in (408, 429)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def read_headers(path: Path) -> dict[str, str]:
    """``Name: value`` per line; blank lines and ``#`` comments skipped. The values are secrets to the log."""
    headers = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError("http.headers_file", f"cannot read {str(path)!r}: {error}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip() or not value.strip():
            raise ConfigError("http.headers_file", f"{str(path)!r} line {number}: expected 'Name: value'")
        headers[name.strip()] = value.strip()
        log.register_secret(value.strip())
    return headers


def post_event(action: HttpAction, event: Mapping[str, Any]) -> PostResult:
    body = json.dumps(event, sort_keys=True).encode("utf-8")
    headers = {"Content-Type": "application/json", EVENT_HEADER: str(event["event_id"])}
    if action.headers_file is not None:
        headers |= read_headers(action.headers_file)
    if action.secret_file is not None:
        secret = read_secret_file(action.secret_file, "http.secret_file")
        log.register_secret(secret.reveal())
        headers[SIGNATURE_HEADER] = sign(secret.reveal(), body)
    try:
        response = requests.post(action.url, data=body, headers=headers, timeout=action.timeout_seconds,
                                 allow_redirects=False, stream=True)  # the answer's body is never read
    except requests.RequestException as error:
        return PostResult(None, f"POST {action.url}: no answer ({type(error).__name__})")
    with response:
        return PostResult(response.status_code, f"POST {action.url}: HTTP {response.status_code}")
