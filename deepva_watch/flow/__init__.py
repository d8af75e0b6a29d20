"""The flow's machinery: what a step may decide, what it may use, what a stage is, and the one runner for all."""

from deepva_watch.flow.outcomes import Advance, Changed, Fail, Outcome, Retry, Wait, gone
from deepva_watch.flow.services import ApiGate, Clock, RateBudget, Services, SystemClock, Telemetry, folder_key
from deepva_watch.flow.stage import Admission, AnyStage, Stage, services_only

__all__ = [
    "Admission", "Advance", "AnyStage", "ApiGate", "Changed", "Clock", "Fail", "Outcome", "RateBudget", "Retry",
    "Services", "Stage", "SystemClock", "Telemetry", "Wait", "folder_key", "gone", "services_only",
]
