"""A DeepVA-compatible emulator — not the real service.

deepva-watch has no internet in its tests, benchmarks and demos, so it ships this small server that speaks the DeepVA
REST API (``/api/v1``: jobs, detailed results, storage uploads) on loopback. It is an independent second reading of the
API contract and shares no code with the client in ``deepva_watch.deepva``: a misunderstanding on one side then shows
up as a failing test instead of being built into both.

What it does:

* ``Authorization: Key <key>`` on every ``/api/v1`` request (401 otherwise).
* ``POST /storage/`` streams ``multipart/form-data`` uploads to disk (Content-Length or chunked bodies).
* Jobs move ``waiting`` → ``processing`` → ``completed`` as a function of an injectable clock; results are synthetic,
  shaped like DeepVA's and deterministic per file content (see :mod:`.results`).
* Jobs take ``processing_time`` each, or with ``video_processing_ratio`` (``--video-processing-ratio``) above zero
  ``processing_time`` per image and duration × ratio per video, summed over a job's sources.
* It identifies itself: every response carries ``Server: deepva-emulator/0.1``.
* On-prem mode (``onprem_roots`` / ``--onprem-root``): local-path sources under configured server-view prefixes are
  read from mapped local directories (:mod:`.onprem`); without it local paths get 400 as on DeepVA Cloud.
* ``http(s)`` sources on loopback are fetched and analysed; other URLs are accepted but never fetched (:mod:`.fetch`).
* Signed webhooks (``webhook_secret`` / ``--webhook-secret-file``) on start, completion and failure (:mod:`.webhooks`).
* Fault injection, deterministic under a seed (:mod:`.faults`).

Control endpoints (no key; they exist only on the emulator and are never subject to faults):

* ``GET /_emulator/stats`` — request counts per route, jobs created, ``jobs_by_state``, ``completed_jobs_by_tag``
  (deleted jobs included, to spot duplicates), uploads, peak concurrency, bytes uploaded, ``faults_injected`` by kind,
  ``webhooks_delivered`` / ``webhooks_failed`` / ``webhooks_skipped``.
* ``GET /_emulator/faults`` — the current fault plan as JSON (all fields, see :mod:`.faults`).
* ``POST /_emulator/faults`` — merge the posted fields into the plan and restart the dice from its ``seed``; answers
  with the whole plan. 400 with ``errors`` for unknown fields or bad values.
* ``DELETE /_emulator/faults`` — no faults from now on (ends an outage).
* ``POST /_emulator/rotate-key`` with ``{"api_key": "new"}`` — the old key gets 401 from then on.

The same from Python: ``emulator.set_faults(...)``, ``emulator.clear_faults()``, ``emulator.rotate_key(...)``.

From Python::

    from deepva_watch.emulator import Emulator, EmulatorConfig

    with Emulator(EmulatorConfig(processing_time=0)) as emulator:
        ...  # point a client at emulator.base_url with key emulator.config.api_key

From a shell: ``python -m deepva_watch.emulator --port 8765 --key-file key.txt``.
"""

from .config import DEFAULT_API_KEY, EmulatorConfig
from .service import Emulator

__all__ = ["DEFAULT_API_KEY", "Emulator", "EmulatorConfig"]
