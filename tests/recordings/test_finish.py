"""Finishing as a child process survives its parent's death
(``python -m recordings.finish``): a finishing done but never stored is
found again, and a child whose server was killed dies with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from recordings.finish import PARENT_VARIABLE, RESULT_NAME
from recordings.recorder import Recorder
from streaming import aiortc_glue
from streaming.slot import Slot
from tests.support.fakes import FakeClock, FakeSource
from tests.support.probe import decode_errors
from tests.support.synthetic import stream

ROOT = Path(__file__).resolve().parents[2]


def record(item: Path, seconds: float) -> None:
    clock = FakeClock()
    slot = Slot("program", "H264", aiortc_glue.make_packetizer, clock=clock)
    source = FakeSource()
    slot.attach(source)
    recorder = Recorder(item, slot, clock=clock)
    recorder.start()
    for timed in stream("H264", seconds)[0]:
        clock.now = 1000.0 + timed.arrival
        slot.push(source, timed.frame)
    recorder.stop()
    slot.close()


def run_finish(item: Path) -> tuple[int, list[dict[str, object]]]:
    done = subprocess.run([sys.executable, "-m", "recordings.finish", str(item)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


async def test_a_finishing_done_but_never_stored_is_found_again(tmp_path: Path) -> None:
    """The server died after its child removed the parts and before it
    stored the result: the next start's finishing gives the same result."""
    item = tmp_path / "item"
    record(item, 3.0)
    status, lines = run_finish(item)
    assert status == 0, lines
    first = lines[-1]["result"]
    assert not (item / "parts").exists()
    assert json.loads((item / RESULT_NAME).read_text()) == first
    status, lines = run_finish(item)  # what a restart does with an item left 'finishing'
    assert status == 0, lines
    assert lines[-1]["result"] == first
    assert decode_errors(item / "lecture.mp4") == ""


def test_a_finishing_child_dies_with_its_server(tmp_path: Path) -> None:
    """The child blocks reading a segment that is a pipe nobody writes (a
    long remux, held still); its parent is SIGKILLed: the child goes too, so
    the next start never finds a second finishing of the item under way."""
    item = tmp_path / "item"
    (item / "parts").mkdir(parents=True)
    fifo = item / "parts" / "seg-0001.mkv"
    os.mkfifo(fifo)
    parent_code = (
        "import os, subprocess, sys, time\n"
        f"env = {{**os.environ, {PARENT_VARIABLE!r}: str(os.getpid())}}\n"
        f"child = subprocess.Popen([sys.executable, '-m', 'recordings.finish', {str(item)!r}],"
        " env=env)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    child_pid = 0
    writer = -1
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        deadline = time.monotonic() + 20
        # Opening the pipe for writing succeeds once the child has it open
        # for reading; then the child waits for bytes that never come.
        while writer < 0:
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                assert time.monotonic() < deadline, "the child never opened its segment"
                time.sleep(0.05)
        time.sleep(0.2)
        assert _alive(child_pid), "the child should be waiting for its segment"
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 5
        while _alive(child_pid):
            assert time.monotonic() < deadline, "the finishing child outlived its server"
            time.sleep(0.05)
    finally:
        if writer >= 0:
            os.close(writer)
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
        if child_pid and _alive(child_pid):
            os.kill(child_pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Alive and not a zombie (a reaped or exited child is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"
