"""``plan``: what a config would hand to DeepVA, before it does: per folder and in total, the files, their bytes and
minutes of video that would be submitted, and what would not be (skipped by ``existing``, already in the ledger,
adopted from our own sidecars, not media). A dry run: no API call, no ledger write.
"""

from __future__ import annotations

from pathlib import Path

import argparse
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from deepva_watch.commands.common import EXIT_OK, Progress, emit_json, load, open_ledger
from deepva_watch.config import Config, FolderConfig
from deepva_watch.flow import folder_key
from deepva_watch.ledger import Ledger
from deepva_watch.media.files import VersionChanged, descriptor_path, open_version
from deepva_watch.media.fingerprint import fingerprint_descriptor
from deepva_watch.media.probe import probe
from deepva_watch.media.sniff import Sniffed, sniff_descriptor
from deepva_watch.sidecars.prior import find_prior_result
from deepva_watch.stages.publish import sidecar_settings
from deepva_watch.service.status import human_size
from deepva_watch.states import State
from deepva_watch.watch.discover import Sighting, existing_to_skip, scan_tree


@dataclass
class FolderPlan:
    folder: str
    modules: list[str]
    images: int = 0
    videos: int = 0
    bytes: int = 0
    video_minutes: float = 0.0
    skipped: int = 0
    """Present before the folder was first watched, and its ``existing`` rule skips them."""
    known: int = 0
    """Already in the ledger as they are: no new job."""
    adopted: int = 0
    """Our sidecars already hold their results for the same content and modules."""
    not_media: int = 0
    unreadable: int = 0

    @property
    def files(self) -> int:
        return self.images + self.videos


@dataclass
class Plan:
    folders: list[FolderPlan] = field(default_factory=list)

    def total(self) -> dict[str, Any]:
        keys = ("images", "videos", "bytes", "video_minutes", "skipped", "known", "adopted", "not_media", "unreadable")
        return {key: sum(getattr(folder, key) for folder in self.folders) for key in keys}


def run(args: argparse.Namespace) -> int:
    config = load(args)
    ledger = _ledger(config)
    progress = Progress("plan: files looked at")
    plan = Plan([plan_folder(folder, ledger, progress, time.time()) for folder in config.folders])
    progress.done()
    if args.json:
        emit_json({"folders": [{**asdict(folder), "files": folder.files} for folder in plan.folders],
                   "total": plan.total(), "budget": _budget_days(config, plan)})
    else:
        _print(config, plan)
    return EXIT_OK


def _ledger(config: Config) -> Ledger | None:
    """The daemon's ledger, read-only, when there is one yet (what it knows is not submitted again)."""
    if isinstance(config.ledger, Path) and not config.ledger.is_file():
        return None
    return open_ledger(config, readonly=True)


def plan_folder(folder: FolderConfig, ledger: Ledger | None, progress: Progress, now: float) -> FolderPlan:
    key = folder_key(folder)
    result = FolderPlan(key, sorted(folder.modules))
    files = scan_tree(folder).files
    latest = ledger.latest_versions(key) if ledger is not None else {}
    first_watch = ledger is None or ledger.folder_first_seen(key) is None
    new = [Sighting(relpath, size, mtime) for relpath, (size, mtime) in files.items()
           if latest.get(relpath, (None, None, None))[:2] != (size, mtime) or latest[relpath][2] == State.GONE]
    result.known = len(files) - len(new)
    skipped = existing_to_skip(folder, [s for s in new if s.relpath not in latest], now) if first_watch else set()
    result.skipped = len(skipped)
    for sighting in new:
        progress.update(progress.count + 1)
        if sighting.relpath not in skipped:
            _look_at(folder, sighting, result)
    return result


def _look_at(folder: FolderConfig, sighting: Sighting, result: FolderPlan) -> None:
    """Sniff the file as the daemon would; count it as submitted, adopted or not media."""
    root = folder.path.absolute()
    try:
        with open_version(root, sighting.relpath, follow_symlinks=folder.follow_symlinks, size=sighting.size,
                          mtime_ns=sighting.mtime_ns) as descriptor:
            verdict = sniff_descriptor(descriptor)
            if not isinstance(verdict, Sniffed):
                result.not_media += 1
                return
            content_hash = fingerprint_descriptor(descriptor)
            seconds = probe(descriptor_path(descriptor), verdict.mime, "video", pass_fds=(descriptor,)).duration_seconds \
                if verdict.kind == "video" else None
    except (OSError, VersionChanged):
        result.unreadable += 1
        return
    prior = find_prior_result(root / sighting.relpath, watch_root=root, settings=sidecar_settings(folder),
                              kind=verdict.kind)
    if prior is not None and prior.covers(content_hash, folder.modules):
        result.adopted += 1
        return
    result.bytes += sighting.size
    if verdict.kind == "video":
        result.videos += 1
        result.video_minutes += (seconds or 0.0) / 60
    else:
        result.images += 1


def _budget_days(config: Config, plan: Plan) -> dict[str, float] | None:
    """Days the daily budget needs for the plan, per cap set."""
    budget, total = config.budget, plan.total()
    days = {}
    if budget.video_minutes_per_day:
        days["video_days"] = round(total["video_minutes"] / budget.video_minutes_per_day, 2)
    if budget.images_per_day:
        days["image_days"] = round(total["images"] / budget.images_per_day, 2)
    return days or None


def _print(config: Config, plan: Plan) -> None:
    for folder in plan.folders:
        print(f"{folder.folder}: {folder.files} file(s) would be submitted ({folder.images} image(s), {folder.videos} "
              f"video(s), {human_size(folder.bytes)}, {folder.video_minutes:.1f} min of video); modules "
              f"{', '.join(folder.modules)}")
        print(f"  not submitted: {folder.skipped} skipped (existing), {folder.known} already in the ledger, "
              f"{folder.adopted} adopted from their sidecars, {folder.not_media} not media, "
              f"{folder.unreadable} unreadable")
    total = plan.total()
    print(f"total: {total['images'] + total['videos']} file(s), {human_size(total['bytes'])}, "
          f"{total['video_minutes']:.1f} min of video")
    days = _budget_days(config, plan)
    if days:
        print("with the daily budget: " + ", ".join(f"{value:g} {name.replace('_', ' ')}" for name, value in
                                                     days.items()))
