"""Running recordings and finishing them, for the process that owns the data folder.

``Recordings`` keeps the recorder of every item being recorded, flushes their
files to disk every few seconds (off the event loop), and finishes items in a
child process (``python -m recordings.finish``), one at a time and at a lower
priority, so a long remux never stalls the relay. It knows nothing of the
catalog: its owner passes item ids and hears back through callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recordings.finish import PARENT_VARIABLE, FinishError, FinishResult
from recordings.recorder import STAGE_PATTERN, Label, Recorder
from streaming.slot import Slot

logger = logging.getLogger(__name__)

PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)
SYNC_INTERVAL = 2.0  # seconds between fsyncs of the segments being written
ITEM_ID_CHARS = frozenset("0123456789abcdef")

EventCallback = Callable[[str, str, str], None]  # (item id, kind, detail)


def valid_item_id(item_id: str) -> bool:
    """Item ids are 16 lowercase hex digits: safe as a folder name."""
    return len(item_id) == 16 and set(item_id) <= ITEM_ID_CHARS


class Recordings:
    def __init__(self, root: Path, on_event: EventCallback | None = None,
                 min_free_bytes: int | None = None) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._on_event = on_event or (lambda item, kind, detail: None)
        self._min_free = min_free_bytes
        self.active: dict[str, Recorder] = {}  # the program recorder of each item
        self.stage: dict[str, Recorder] = {}  # the stage recorder of each item
        self._finishing: dict[str, asyncio.subprocess.Process] = {}
        self._finish_lock = asyncio.Lock()
        self._sync_task: asyncio.Task[None] | None = None

    def item_dir(self, item_id: str) -> Path:
        if not valid_item_id(item_id):
            raise ValueError(f"not an item id: {item_id!r}")
        return self.root / item_id

    # ---------------------------------------------------------------- recording

    def start(self, item_id: str, slot: Slot, stage: Slot | None = None,
              label: Label | None = None) -> Recorder:
        """Record ``slot`` (the program) into the item, and ``stage`` beside it
        on the same timeline; ``label`` names a stage source (its room)."""
        directory = self.item_dir(item_id)

        def on_event(kind: str, detail: str) -> None:
            if kind == "failed":
                self.active.pop(item_id, None)
                stage_recorder = self.stage.pop(item_id, None)
                if stage_recorder is not None:
                    stage_recorder.stop()
            self._on_event(item_id, kind, detail)

        def on_stage_event(kind: str, detail: str) -> None:
            # The stage is secondary: its failure is a notice, the lecture
            # goes on being recorded.
            if kind == "failed":
                self.stage.pop(item_id, None)
            if kind != "segment":
                self._on_event(item_id, "stage-" + kind, detail)

        kwargs: dict[str, Any] = {}
        if self._min_free is not None:
            kwargs["min_free_bytes"] = self._min_free
        recorder = Recorder(directory, slot, on_event, **kwargs)
        self.active[item_id] = recorder
        recorder.start()
        if stage is not None:
            stage_recorder = Recorder(directory, stage, on_stage_event, pattern=STAGE_PATTERN,
                                      origin=lambda: recorder.started_at, label=label,
                                      **kwargs)
            self.stage[item_id] = stage_recorder
            stage_recorder.start()
        if self._sync_task is None or self._sync_task.done():
            self._sync_task = asyncio.create_task(self._sync_loop())
        return recorder

    def stop(self, item_id: str) -> Recorder | None:
        stage_recorder = self.stage.pop(item_id, None)
        if stage_recorder is not None:
            stage_recorder.stop()
        recorder = self.active.pop(item_id, None)
        if recorder is not None:
            recorder.stop()
        return recorder

    async def _sync_loop(self) -> None:
        """Push written clusters to the disk, so a power cut loses seconds too."""
        loop = asyncio.get_running_loop()
        while self.active:
            await asyncio.sleep(SYNC_INTERVAL)
            for recorder in [*self.active.values(), *self.stage.values()]:
                recorder.flush()
                fd = recorder.sync_to_disk()
                if fd is None:
                    continue
                try:
                    await loop.run_in_executor(None, os.fdatasync, fd)
                except OSError as exc:
                    logger.warning("fsync of %s failed: %s", recorder.directory.name, exc)
                finally:
                    os.close(fd)

    # ---------------------------------------------------------------- finishing

    async def finish(self, item_id: str,
                     on_progress: Callable[[float], None] | None = None) -> FinishResult:
        """Finish an item in a child process; raises FinishError with the reason."""
        directory = self.item_dir(item_id)
        async with self._finish_lock:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "recordings.finish", str(directory),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                cwd=PROJECT_ROOT, env={**os.environ, PARENT_VARIABLE: str(os.getpid())},
            )
            self._finishing[item_id] = process
            result: dict[str, Any] | None = None
            error: str | None = None
            try:
                assert process.stdout is not None and process.stderr is not None
                stderr_task = asyncio.create_task(process.stderr.read())
                async for line in process.stdout:
                    try:
                        message = json.loads(line)
                    except ValueError:
                        continue
                    if "progress" in message and on_progress is not None:
                        on_progress(float(message["progress"]))
                    elif "result" in message:
                        result = message["result"]
                    elif "error" in message:
                        error = str(message["error"])
                status = await process.wait()
                stderr = (await stderr_task).decode("utf-8", "replace").strip()
            finally:
                self._finishing.pop(item_id, None)
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
            if result is not None and status == 0:
                return FinishResult(**result)
            if error is None:
                tail = stderr.splitlines()[-1] if stderr else f"exit status {status}"
                error = f"finishing crashed: {tail}"
            raise FinishError(error)

    # ---------------------------------------------------------------- shutdown

    async def close(self) -> None:
        """Stop every recorder (files closed properly) and any finishing child.

        Items keep their state: the next start-up finishes them.
        """
        for item_id in list(self.active):
            self.stop(item_id)
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
        for process in list(self._finishing.values()):
            with contextlib.suppress(ProcessLookupError):
                process.kill()
