"""A stage: where it takes rows from, the step it applies to each, and how much work it may take at once.

In the spirit of beets' pipeline stages and structlog's processors, a stage is a pair of functions: ``begin(services,
batch)`` prepares what a whole batch shares (one list request for many jobs) and returns the context that
``step(context, asset)`` receives. A step returns an :mod:`outcome <deepva_watch.flow.outcomes>`; it never writes to
the ledger, keeps no state between calls and reaches nothing through thread-locals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from deepva_watch.config import Config
from deepva_watch.flow.outcomes import Outcome
from deepva_watch.flow.services import Services
from deepva_watch.ledger import Asset, Quota
from deepva_watch.states import HOME, State

Context = TypeVar("Context")


def services_only(services: Services, batch: Sequence[Asset]) -> Services:
    """The ``begin`` of a stage whose steps need nothing but the services."""
    return services


@dataclass(frozen=True)
class Admission:
    """How much work a stage may take now: one policy instead of knobs spread over the stage."""

    room: Callable[[Services], int] | None = None
    """Rows it may take now (a window, a request budget); None: a batch at a time."""
    quota: Callable[[Config], Quota] | None = None
    """A strict limit counted inside each claim, so that workers claiming together never overshoot it."""
    rest: Callable[[Services], float] | None = None
    """With no room: seconds until there may be some (a budget refilling); None: until woken."""
    needs_api: bool = False
    """Rests while DeepVA refuses the API key."""
    freed_by: tuple[State, ...] = ()
    one_node: bool = False
    """Run by one node of a shared ledger at a time (tracking: one list request answers for every job)."""
    """Rows arriving in these states may free room (a finished job frees a slot)."""


@dataclass(frozen=True)
class Stage(Generic[Context]):
    name: str
    takes: tuple[State, ...]
    step: Callable[[Context, Asset], Outcome]
    begin: Callable[[Services, Sequence[Asset]], Context]
    working: State | None = None
    """Claim rows into this state, so that several workers may run the stage; None: one worker reads due rows."""
    workers: Callable[[Config], int] = field(default=lambda config: 1)
    batch: int = 1
    """Rows taken at once: more saves ledger round trips on quick steps; one keeps a long step from holding rows
    another worker could start on."""
    claim_bytes: int | None = None
    """Take further rows only while those already taken hold less than this (many stills at once, a video alone)."""
    together: float = 0.0
    """Rows are taken all together, once the first is due and the rows due up to this many seconds after it are due
    too: one list request then answers for every job, and rows falling due in a burst cost one request."""
    admission: Admission = Admission()
    hands_on: bool = True
    """A file this stage ends ``published`` or ``failed`` goes through its folder's actions first; False for the stage
    that runs them (failing there never starts ``on_failed``)."""

    def home_of(self, asset: Asset) -> State:
        """Where the row rests on Wait or Retry."""
        return HOME.get(asset.state, asset.state)


AnyStage = Stage[Any]
