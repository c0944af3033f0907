"""A recording that cannot go on, with real LSL, Ray and files: a disk that fills mid-session (a small tmpfs,
where the test may mount one), a file-size limit reached mid-session (the same failed write, without privileges),
and a place that is full from the start. The session goes on predicting, says the recording stopped and why, and
the file keeps what was written."""

from __future__ import annotations

import contextlib
import subprocess
import time

import psutil
import pytest
import pyxdf
from _publisher import Publisher
from _watch import collect, events_of, monitor_until_predicting, pid_of, predictions

from biostream.runtime.session import MonitorSession
from devices.errors import BadInputError
from devices.formats import read_recording

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_runtime")]


@contextlib.contextmanager
def _small_disk(folder):
    """A 4 MiB tmpfs mounted on ``folder`` (skips where this process may not mount)."""
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder) -> None:
    """Write zeros into ``folder`` until its file system is full."""
    with open(folder / "filler", "wb") as filler, contextlib.suppress(OSError):
        while True:
            filler.write(b"\0" * 65536)
            filler.flush()


def _limit_file_size(session, folder) -> None:
    """Let the recorder's process write no file past its recording's current size (RLIMIT_FSIZE: EFBIG)."""
    size = (folder / "session.xdf").stat().st_size
    psutil.Process(pid_of(session, "recorder")).rlimit(psutil.RLIMIT_FSIZE, (size + 2048, size + 2048))


@pytest.mark.parametrize("fault", ["disk fills", "file size limit"])
def test_a_recording_that_cannot_be_written_stops_and_the_session_goes_on(tmp_path, unique_id, fault):
    publisher = Publisher(f"rec-{unique_id}", f"rec-{unique_id}", seed=12).start()
    with contextlib.ExitStack() as stack:
        folder = stack.enter_context(_small_disk(tmp_path / "disk")) if fault == "disk fills" else tmp_path
        session = stack.enter_context(MonitorSession(record=folder / "session.xdf"))
        subscription, key = monitor_until_predicting(session, f"rec-{unique_id}")
        time.sleep(1.0)
        _fill(folder) if fault == "disk fills" else _limit_file_size(session, folder)
        failed_at = session.clock()
        items = collect(subscription, 10.0, until=lambda item: item[0] == "event" and item[1].kind == "recording")
        (stopped,) = events_of(items, "recording")
        why = "No space left on device" if fault == "disk fills" else "File too large"
        assert stopped.level == "error" and str(folder / "session.xdf") in stopped.message
        assert f"stopped: {why} (what was written is kept)" in stopped.message
        status = session.recording_status()
        assert status["recording"] is False and why in status["reason"]
        after = predictions(collect(subscription, 4.0))
        assert after and all(p.ok for p in after)  # the session goes on
        summary = session.stop()
        assert summary["recording"]["recording"] is False and why in summary["recording"]["reason"]
        # The file keeps what was written, up to the failed write; both readers open it.
        recording = read_recording(folder / "session.xdf")
        ppg = recording.stream(f"rec-{unique_id}")
        assert len(ppg.timestamps) > 5 * 64 and failed_at - 3.0 < ppg.timestamps[-1] <= stopped.at_s
        streams, _ = pyxdf.load_xdf(str(folder / "session.xdf"))
        assert any(s["info"]["name"][0] == f"rec-{unique_id}" and len(s["time_stamps"]) for s in streams)
    publisher.stop()


def test_recording_to_a_full_place_is_refused_at_once_and_the_session_goes_on(tmp_path, unique_id):
    full = tmp_path / "full.xdf"
    full.symlink_to("/dev/full")  # every write fails with ENOSPC, as on a full disk
    publisher = Publisher(f"full-{unique_id}", f"full-{unique_id}", seed=13).start()
    with MonitorSession() as session:
        subscription, _ = monitor_until_predicting(session, f"full-{unique_id}")
        with pytest.raises(BadInputError, match=r"cannot record to '.*full\.xdf': No space left on device"):
            session.start_recording(full)
        assert session.recording_status() is None
        assert all(p.ok for p in predictions(collect(subscription, 3.0)))
        session.start_recording(tmp_path / "instead.xdf")  # another place works at once
        assert session.recording_status()["recording"]
        session.stop()
    publisher.stop()
    assert (tmp_path / "instead.xdf").stat().st_size > 0


def test_a_stream_that_fails_while_recorded_is_dropped_and_the_others_are_still_recorded(tmp_path, unique_id):
    from biostream.lsl import list_streams
    from biostream.runtime.recorder import SessionRecorder

    good = Publisher(f"good-{unique_id}", f"good-{unique_id}", seed=17).start()
    odd = Publisher(f"odd-{unique_id}", f"odd-{unique_id}", seed=18).start()
    found = {d.source_id: d for d in list_streams(1.0) if d.source_id.endswith(unique_id)}
    recorder = SessionRecorder(tmp_path / "two.xdf", record_markers=False)
    try:
        for description in found.values():
            assert recorder.add_stream(description)["ok"]
        time.sleep(1.0)
        (odd_reader,) = [r.reader for r in recorder._streams.values() if r.reader.name == f"odd-{unique_id}"]

        def broken_pull():  # a fault in one stream's reading, whatever its cause
            raise RuntimeError("something no one foresaw")

        odd_reader.pull = broken_pull
        time.sleep(1.0)
        (event,) = recorder.events()
        assert event.kind == "recording" and event.level == "warning"
        assert f"stopped recording stream 'odd-{unique_id}': RuntimeError: something no one foresaw" in event.message
        before = recorder.counts()[f"good-{unique_id}"]
        time.sleep(1.0)
        assert recorder.recording and recorder.counts()[f"good-{unique_id}"] > before + 32
    finally:
        status = recorder.stop()
        good.stop()
        odd.stop()
    assert status["recording"] is False and status["reason"] == ""
    recording = read_recording(tmp_path / "two.xdf")
    assert len(recording.stream(f"good-{unique_id}").timestamps) > 2 * 64
    assert len(recording.stream(f"odd-{unique_id}").timestamps) > 32  # what came before the fault is kept
