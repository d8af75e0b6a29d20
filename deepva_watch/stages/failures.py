"""One place that turns what went wrong in a step into what the ledger should do about it.

Stages catch nothing but the cases they handle specially (a job already created, a file that changed); everything else
comes here, so an outage, a refused key, a full disk and a bug are treated the same way whichever stage met them.
"""

from __future__ import annotations

import errno

from deepva_watch.deepva import DeepVAError, NotAuthenticated, RateLimited, SourceChanged
from deepva_watch.deepva.errors import UntrustedCertificate
from deepva_watch.pipeline import Fail, Outcome, Retry, gone

#: A refused key says nothing about the file: it does not use up the file's attempts, and its row is due again almost
#: at once, because the daemon's API gate (closed by the 401) is what holds the work back until the key is fixed.
REFUSED_KEY_RETRY_SECONDS = 2.0
#: An untrusted certificate is a setup problem (api.ca_bundle), not the file's: the same patience as a refused key.
UNTRUSTED_CERTIFICATE_RETRY_SECONDS = 60.0


def outcome_for(error: BaseException) -> Outcome:
    if isinstance(error, SourceChanged):
        return Retry("the file changed while it was being read; it will be taken again once it settles", delay=0)
    if isinstance(error, NotAuthenticated):
        return Retry(f"DeepVA refused the API key ({error})", delay=REFUSED_KEY_RETRY_SECONDS, counts=False)
    if isinstance(error, UntrustedCertificate):
        return Retry(str(error), delay=UNTRUSTED_CERTIFICATE_RETRY_SECONDS, counts=False)
    if isinstance(error, RateLimited):
        return Retry(str(error), delay=error.retry_after, counts=False)
    if isinstance(error, DeepVAError):
        if error.retryable:
            return Retry(str(error), counts=error.status is not None)
        return Fail(str(error), retryable=False)
    if isinstance(error, FileNotFoundError):
        return gone()
    if isinstance(error, OSError):
        what = error.strerror or type(error).__name__
        if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
            return Retry(f"cannot write or read on disk: {what} ({error.filename or ''})", counts=False)
        return Retry(f"file-system error: {what} ({error.filename or ''})")
    raise error
