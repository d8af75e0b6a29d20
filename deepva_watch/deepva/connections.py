"""urllib3 connection pools whose responses read their headers with :func:`deepva_watch.httpheaders.read_headers`.

``http.client.HTTPResponse.begin`` reads the status line, hands the header block to the email parser (four times the
cost of reading it directly, see :mod:`deepva_watch.httpheaders`), then decides framing from the headers (chunked,
length, keep-alive). Only the middle step is replaced: ``begin`` is the standard library's own code, run with
``parse_headers`` bound to our reader, so framing and keep-alive stay exactly the standard library's. Should a later
Python stop looking ``parse_headers`` up by name, the standard parser is simply used again
(``tests/client/test_connections.py`` notices).
"""

from __future__ import annotations

import http.client
import types
from typing import Any, BinaryIO

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from deepva_watch.httpheaders import read_headers


def parse_response_headers(stream: BinaryIO, _class: type = http.client.HTTPMessage) -> http.client.HTTPMessage:
    """``http.client.parse_headers``'s signature, our reader (lenient, as the standard one is with odd lines)."""
    return read_headers(stream, lenient=True)


_stdlib_begin = http.client.HTTPResponse.begin


class Response(http.client.HTTPResponse):
    begin = types.FunctionType(  # type: ignore[assignment]
        _stdlib_begin.__code__,
        {**vars(http.client), "parse_headers": parse_response_headers},
        _stdlib_begin.__name__,
        _stdlib_begin.__defaults__,
        _stdlib_begin.__closure__,
    )


class Connection(HTTPConnection):
    response_class = Response


class TLSConnection(HTTPSConnection):
    response_class = Response


class ConnectionPool(HTTPConnectionPool):
    ConnectionCls = Connection


class TLSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = TLSConnection


def pool_manager(proxy: str | None, **options: Any) -> urllib3.PoolManager:
    """A PoolManager (a ProxyManager with ``proxy``) whose pools use the connections above."""
    manager = urllib3.ProxyManager(proxy, **options) if proxy is not None else urllib3.PoolManager(**options)
    manager.pool_classes_by_scheme = {"http": ConnectionPool, "https": TLSConnectionPool}
    return manager
