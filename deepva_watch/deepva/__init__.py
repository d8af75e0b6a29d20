"""The DeepVA REST API: client, typed results, and the errors a call can end in."""

from deepva_watch.deepva.client import DeepVAClient, client_for
from deepva_watch.deepva.errors import (
    BadRequest,
    ClientError,
    DeepVAError,
    MalformedResponse,
    MethodNotAllowed,
    NotAuthenticated,
    NotFound,
    RateLimited,
    ServerError,
    SourceChanged,
    TransportError,
    UploadRejected,
)
from deepva_watch.deepva.models import Job, JobPage, Segment, StorageObject
from deepva_watch.deepva.retry import RetryPolicy

__all__ = [
    "BadRequest",
    "ClientError",
    "DeepVAClient",
    "DeepVAError",
    "Job",
    "JobPage",
    "MalformedResponse",
    "MethodNotAllowed",
    "NotAuthenticated",
    "NotFound",
    "RateLimited",
    "RetryPolicy",
    "Segment",
    "ServerError",
    "SourceChanged",
    "StorageObject",
    "TransportError",
    "UploadRejected",
    "client_for",
]
