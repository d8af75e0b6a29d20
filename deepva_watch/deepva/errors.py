"""Every way a DeepVA call can fail, classified in one place.

Callers need to know three things about a failure: may trying again help (``retryable``, with ``retry_after`` when the
server said how long to wait), is the request or file itself bad (permanent), or is our configuration wrong
(:class:`NotAuthenticated`). The classes below answer that without the caller looking at status codes.

Exception text is built here and only here, from parts we control: a method, a path without its query, a status, and a
cleaned excerpt of the body. We never format a transport (requests) exception, because those can carry the request URL
and headers, and the API key must not reach a log line or a traceback.
"""

from __future__ import annotations

import re
from http import HTTPStatus

from deepva_watch.deepva import models

EXCERPT_LIMIT = 300
REDACTED = "***"
# A key shorter than this cannot be told apart from ordinary text, and replacing every "k" in a message helps nobody;
# real DeepVA keys are long random strings.
MIN_REDACTABLE_SECRET = 4
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def redact(text: str, secret: str | None) -> str:
    """Remove the secret from ``text`` wherever it occurs."""
    if secret and len(secret) >= MIN_REDACTABLE_SECRET:
        return text.replace(secret, REDACTED)
    return text


def make_excerpt(body: bytes | str | None, secret: str | None) -> str:
    """The start of a response body, safe to put on one log line.

    Control characters (newlines included) become single spaces so an error stays one line and a hostile body cannot
    forge log lines; the secret is removed *before* cutting, so no prefix of it survives at the cut.
    """
    if body is None:
        return ""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    # Look a little past the limit so a secret straddling the cut is still recognised and removed.
    window = text[: EXCERPT_LIMIT * 2 + len(secret or "")]
    cleaned = _CONTROL_CHARACTERS.sub(" ", redact(window, secret)).strip()
    return cleaned[:EXCERPT_LIMIT]


class DeepVAError(Exception):
    """Base of every failure the client raises; ``str()`` is one readable line without secrets."""

    default_retryable = False

    def __init__(
        self,
        method: str,
        url: str,
        *,
        status: int | None = None,
        excerpt: str = "",
        retryable: bool | None = None,
        reason: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.excerpt = excerpt
        self.retryable = self.default_retryable if retryable is None else retryable
        self.retry_after = retry_after
        self.reason = reason if reason is not None else _status_phrase(status)
        super().__init__(self._line())

    def _line(self) -> str:
        parts = [f"{self.method} {self.url}"]
        if self.status is not None:
            parts.append(f"{self.status} {self.reason}".rstrip())
        elif self.reason:
            parts.append(self.reason)
        if self.excerpt:
            parts.append(self.excerpt)
        return ": ".join(parts)

    def __str__(self) -> str:
        return self._line()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._line()!r})"

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Keyword-only constructor arguments would otherwise be lost when the error crosses a process boundary.
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[DeepVAError], state: dict[str, object]) -> DeepVAError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, str(error))
    return error


def _status_phrase(status: int | None) -> str:
    if status is None:
        return ""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class BadRequest(DeepVAError):
    """400: the request (modules, sources, file) is wrong; sending it again will not help."""


class NotAuthenticated(DeepVAError):
    """401 or 403: the API key is missing, wrong or lacks permission. Nothing works until the configuration changes."""


class NotFound(DeepVAError):
    """404: the job or storage object does not exist (any more)."""


class MethodNotAllowed(DeepVAError):
    """405: we called an endpoint the server does not offer; a client or server version mismatch."""


class ClientError(DeepVAError):
    """Any other 4xx: the server rejected this request; repeating it unchanged will not help."""


class RateLimited(DeepVAError):
    """429: too many requests; wait ``retry_after`` seconds when the server said so."""

    default_retryable = True


class ServerError(DeepVAError):
    """5xx: the server failed; likely transient."""

    default_retryable = True


class TransportError(DeepVAError):
    """No usable HTTP answer: refused or reset connection, timeout, TLS failure.

    ``maybe_applied`` is true when the request may have reached the server before the failure, so a non-idempotent
    call (creating a job) may have taken effect although we saw no answer.
    """

    default_retryable = True

    def __init__(self, method: str, url: str, *, reason: str, maybe_applied: bool) -> None:
        self.maybe_applied = maybe_applied
        super().__init__(method, url, reason=reason)


class UntrustedCertificate(TransportError):
    """The server's TLS certificate did not verify. Trying again at once cannot help: the fix is ``api.ca_bundle`` (a
    private CA) or the server's certificate, so callers wait as patiently as for a refused key."""

    def __init__(self, method: str, url: str) -> None:
        super().__init__(method, url, reason="TLS certificate not trusted (for a private CA, set api.ca_bundle)",
                         maybe_applied=False)


class MalformedResponse(DeepVAError, models.MalformedResponse):
    """The server answered 2xx, but not with JSON of the documented shape.

    Also a :class:`models.MalformedResponse`, so code catching the model's parse error catches this too.
    """


class UploadRejected(DeepVAError):
    """Storage accepted the request but marked the object ``upload_failed``."""


class SourceChanged(DeepVAError):
    """The local file changed size while being uploaded: it is still being written. Settle it again, then retry."""


_BY_STATUS: dict[int, type[DeepVAError]] = {
    400: BadRequest,
    401: NotAuthenticated,
    403: NotAuthenticated,
    404: NotFound,
    405: MethodNotAllowed,
    429: RateLimited,
}


def error_for_status(
    method: str, url: str, status: int, body: bytes | str | None, *, secret: str | None, retry_after: float | None = None
) -> DeepVAError:
    """Map an HTTP error status to its exception, with a safe excerpt of the body."""
    excerpt = make_excerpt(body, secret)
    if status in _BY_STATUS:
        cls = _BY_STATUS[status]
    elif 500 <= status <= 599:
        cls = ServerError
    elif 400 <= status <= 499:
        cls = ClientError
    else:
        # A status we did not expect at all (1xx leaking through, 3xx we could not follow): treat as malformed.
        cls = MalformedResponse
    return cls(method, url, status=status, excerpt=excerpt, retry_after=retry_after)


def may_have_been_applied(error: DeepVAError) -> bool:
    """Could the server have acted on a request that ended in ``error``?

    A lost answer could have; so could any 5xx, which a proxy may send after the server behind it accepted the request
    (a 503 included: it may be the proxy's timeout, not DeepVA's "not now"). A 429 and a 4xx are refusals.
    """
    if isinstance(error, TransportError):
        return error.maybe_applied
    return error.status is not None and error.status >= 500
