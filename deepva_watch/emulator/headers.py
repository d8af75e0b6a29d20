"""Reading a request's header block without the email parser.

``http.server`` hands the header block to :mod:`email.parser`, a general MIME parser. Under the backlog benchmark that
was a third of the emulator's CPU (it even compiles a regular expression for the boundary of every multipart upload it
sees), and the emulator shares the machine with the daemon it serves. A request's header block is simple (field lines
of RFC 9112, section 5), so it is read here directly into the :class:`http.client.HTTPMessage` the handlers use.
"""

from __future__ import annotations

from http.client import HTTPException, HTTPMessage, LineTooLong
from typing import BinaryIO

#: The standard library's limits for the same thing (``http.client._MAXLINE`` and ``_MAXHEADERS``).
MAX_LINE = 65536
MAX_HEADERS = 100


class TooManyHeaders(HTTPException):
    pass


class MalformedHeader(HTTPException):
    pass


def read_headers(stream: BinaryIO) -> HTTPMessage:
    """Read field lines up to the empty line that ends them; a line starting with a space or tab continues the field
    before it (obsolete folding, still accepted by readers)."""
    fields: list[list[str]] = []
    while True:
        line = stream.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            break
        text = line.decode("iso-8859-1").rstrip("\r\n")
        if text[:1] in (" ", "\t"):
            if not fields:
                raise MalformedHeader("the header block starts with a continuation line")
            fields[-1][1] += " " + text.strip()
            continue
        name, colon, value = text.partition(":")
        if not colon or not name or name != name.strip():
            raise MalformedHeader(f"not a header line: {text[:100]!r}")
        if len(fields) == MAX_HEADERS:
            raise TooManyHeaders(f"got more than {MAX_HEADERS} headers")
        fields.append([name, value.strip()])
    message = HTTPMessage()
    for name, value in fields:
        message[name] = value
    return message
