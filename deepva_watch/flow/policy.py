"""The one retry policy: how long a failed step waits, when a file has had enough tries, and what each kind of error
means for the row. Stages catch only the cases they handle specially; everything else comes through
:func:`outcome_for`, so an outage, a refused key, a full disk and a bug are treated alike whichever stage met them."""

from __future__ import annotations

import errno
import random

from deepva_watch.deepva import DeepVAError, NotAuthenticated, RateLimited, SourceChanged
from deepva_watch.deepva.errors import UntrustedCertificate
from deepva_watch.flow.outcomes import Advance, Changed, Fail, Outcome, Retry, gone
from deepva_watch.media.files import VersionChanged
from deepva_watch.states import State

#: A step that keeps failing is retried with exponential backoff (with jitter) and then parked as ``failed``
#: (retryable) for a person to look at; the backoff is stored in the ledger, so it survives restarts.
MAX_ATTEMPTS = 10
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_CAP_SECONDS = 900.0
#: A refused key says nothing about the file: the row is due again almost at once, and the API gate (closed by the
#: 401) is what holds the work back until the key is fixed.
REFUSED_KEY_RETRY_SECONDS = 2.0
#: An untrusted certificate is a setup problem (api.ca_bundle), not the file's.
UNTRUSTED_CERTIFICATE_RETRY_SECONDS = 60.0
#: The machine ran short of something (processes, open files, memory): not the file's fault either.
RESOURCE_RETRY_SECONDS = 10.0
_DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})
_RESOURCE_ERRORS = frozenset({errno.EAGAIN, errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


def backoff(attempts: int, rng: random.Random) -> float:
    """Exponential backoff with jitter: spreads retries of many files so an outage ends without a stampede."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** max(0, attempts - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def outage_backoff(failing_for: float | None, rng: random.Random) -> float:
    """While DeepVA is unreachable, each file waits about half as long as the outage has lasted so far (up to the
    cap): requests thin out as an outage drags on, and none waits more than half the outage once it ends."""
    if not failing_for:
        return 0.0
    ceiling = min(BACKOFF_CAP_SECONDS, failing_for / 2)
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def outcome_for(error: BaseException) -> Outcome:
    """What the ledger should do about an error a step met; re-raises what is no expected failure (a bug)."""
    if isinstance(error, SourceChanged):
        return Retry("the file changed while it was being read; it will be taken again once it settles", delay=0)
    if isinstance(error, NotAuthenticated):
        return Retry(f"DeepVA refused the API key ({error})", delay=REFUSED_KEY_RETRY_SECONDS, counts=False)
    if isinstance(error, UntrustedCertificate):
        return Retry(str(error), delay=UNTRUSTED_CERTIFICATE_RETRY_SECONDS, counts=False)
    if isinstance(error, RateLimited):
        return Retry(str(error), delay=_server_wait(error), counts=False)
    if isinstance(error, DeepVAError):
        if error.retryable:
            return Retry(str(error), delay=_server_wait(error), counts=error.status is not None)
        return Fail(str(error), retryable=False)
    if isinstance(error, FileNotFoundError):
        return gone()
    if isinstance(error, OSError):
        what = f"{error.strerror or type(error).__name__} ({error.filename or ''})"
        if error.errno in _RESOURCE_ERRORS:
            return Retry(f"the machine is short of resources: {what}", delay=RESOURCE_RETRY_SECONDS, counts=False)
        if error.errno in _DISK_ERRORS:
            return Retry(f"cannot write or read on disk: {what}", counts=False)
        return Retry(f"file-system error: {what}")
    raise error


def _server_wait(error: DeepVAError) -> float | None:
    """The wait the server asked for (``Retry-After``), within the backoff's cap; None: the policy's own backoff."""
    return min(error.retry_after, BACKOFF_CAP_SECONDS) if error.retry_after is not None else None


def changed_outcome(changed: VersionChanged, why: str) -> Outcome:
    """Another regular file of another size or time is a new version; anything else in its place is no media."""
    if changed.size is not None and changed.mtime_ns is not None:
        return Changed(changed.size, changed.mtime_ns, f"{why} ({changed.why})")
    return Advance(State.SUPERSEDED, {"last_error": f"{why}: {changed.why}"})
