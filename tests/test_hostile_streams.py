"""Hostile or broken LSL streams, over real loopback LSL: anyone on the network can publish one.

Huge or malformed metadata, absurd rates, names and source ids copied from our streams, strings that are huge
or not UTF-8, floods of samples. Each is listed (or ignored by liblsl itself) without crashing, refused in one
line when it cannot be monitored safely, or read with safe defaults and a note; never executed, trusted as ours,
or allowed to allocate without bound. Every test makes its own outlets with unique names and source ids; a
stream's description is taken from its outlet (``StreamDescription.from_info(outlet.get_info())`` holds what
discovery shows) so that only the tests about discovery wait for it.
"""

from __future__ import annotations

import math
import time
import uuid

import numpy as np
import pylsl
import pytest
import pyxdf

from biostream.lsl import StreamDescription, StreamReader, list_streams, resolve_selector
from biostream.lsl.discovery import MAX_CHANNELS, pick_successor
from biostream.lsl.inlet import MAX_STRING_CHARS
from biostream.runtime.outlet import PredictionOutlet
from biostream.runtime.pipeline import ModelInput, StreamPipeline, StreamSpec
from biostream.runtime.recorder import MAX_DESC_VALUE_CHARS, MAX_DESC_VALUES, SessionRecorder
from bridges.bundle import InputInfo
from devices.errors import BadInputError, StreamMismatchError
from devices.lsl_meta import MAX_LABEL_CHARS, make_stream_info

EVIL = "<img src='/etc/passwd'><h1>big</h1>\n\x1b[2J\u202eevil"


def _described(outlet: pylsl.StreamOutlet) -> StreamDescription:
    return StreamDescription.from_info(outlet.get_info())


def _outlet_with_channels(name, entries, n_channels=None, lsl_type="EEG", sfreq_hz=100.0, nested=False):
    """An outlet whose ``desc/channels`` holds ``entries`` (dicts of child values; None: no <label> at all)."""
    n = len(entries) if n_channels is None else n_channels
    info = pylsl.StreamInfo(name, lsl_type, n, sfreq_hz, pylsl.cf_float32, name)
    parent = info.desc().append_child("channels")
    for entry in entries:
        ch = parent.append_child("channel")
        for key, value in entry.items():
            ch.append_child_value(key, value)
        if nested:  # channels inside a channel: liblsl accepts any XML tree
            parent = ch
    return pylsl.StreamOutlet(info)


def _one_line_refusal(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and len(message) < 600, message
    return message


# ------------------------------------------------------------------------------------------- 1. huge metadata
def test_huge_declarations_are_listed_quickly_and_refused_before_any_buffer_exists(unique_id):
    # liblsl builds a 1,000,000-channel outlet at once (it allocates per sample pushed, and nothing is pushed).
    wide = pylsl.StreamOutlet(pylsl.StreamInfo(f"wide-{unique_id}", "EEG", 1_000_000, 250.0, pylsl.cf_float32,
                                               f"wide-{unique_id}"))
    long_name = pylsl.StreamOutlet(pylsl.StreamInfo(f"long-{unique_id}-" + "n" * 60_000, "EEG", 2, 250.0,
                                                    pylsl.cf_float32, f"long-{unique_id}"))
    started = time.monotonic()
    found = {d.source_id: d for d in list_streams(wait_s=1.0)}
    assert time.monotonic() - started < 3.0
    wide_seen, long_seen = found[f"wide-{unique_id}"], found[f"long-{unique_id}"]
    assert wide_seen.n_channels == 1_000_000 and "1,000,000 channels (at most 1,024)" in wide_seen.problems[0]
    assert len(long_seen.name) > 60_000 and len(long_seen.summary()) < 400  # shown cut, kept whole for matching
    assert any("name of 60,0" in p for p in long_seen.problems)

    for seen, what in ((wide_seen, "1,000,000 channels"), (long_seen, "a name of 60,0")):
        started = time.monotonic()
        with pytest.raises(StreamMismatchError, match="is refused: ") as err:
            StreamReader(seen).connect(3.0)
        assert time.monotonic() - started < 2.5  # refused before an inlet (and liblsl's buffers) exists
        assert what in _one_line_refusal(err)
        with pytest.raises(StreamMismatchError, match="is refused: "):  # display-only monitoring too
            StreamPipeline(StreamSpec("wide", seen)).connect(3.0)
    assert wide_seen.n_channels > MAX_CHANNELS
    del wide, long_name


def _big_description_outlet(name: str) -> pylsl.StreamOutlet:
    """100,000 channel entries and a 1 MB value on a 2-channel stream: ~6 MB of XML that liblsl transfers."""
    info = pylsl.StreamInfo(name, "EEG", 2, 100.0, pylsl.cf_float32, name)
    channels = info.desc().append_child("channels")
    for k in range(100_000):
        channels.append_child("channel").append_child_value("label", f"c{k}")
    info.desc().append_child_value("notes", "y" * 1_000_000)
    return pylsl.StreamOutlet(info)


def test_huge_descriptions_are_ignored_and_long_labels_cut_with_a_note(unique_id):
    big = _big_description_outlet(f"bigdesc-{unique_id}")
    # One 5 MB label (over the 1 MiB description limit) and one 300 kB label (under it: cut to 64 characters).
    huge_label = _outlet_with_channels(f"hugelabel-{unique_id}", [{"label": "L" * 5_000_000}, {"label": "ok"}])
    long_label = _outlet_with_channels(f"longlabel-{unique_id}", [{"label": "L" * 300_000, "unit": "uV"},
                                                                  {"label": "ok", "unit": "u" * 1000}])
    with StreamReader(_described(big)).connect(5.0) as reader:
        assert reader.channel_labels == ["ch1", "ch2"]
        assert len(reader.notes) == 1 and "bytes (over 1,048,576): ignored" in reader.notes[0]
    with StreamReader(_described(huge_label)).connect(5.0) as reader:
        assert reader.channel_labels == ["ch1", "ch2"] and "ignored" in reader.notes[0]
    with StreamReader(_described(long_label)).connect(5.0) as reader:
        assert reader.channel_labels == ["L" * (MAX_LABEL_CHARS - 1) + "…", "ok"]
        assert len(reader.channel_units[1]) == MAX_LABEL_CHARS
        assert any("2 label/unit/type value(s)" in note for note in reader.notes)


def test_recordings_take_bounded_clean_metadata_from_hostile_streams(unique_id, tmp_path):
    big = _big_description_outlet(f"bigdesc-{unique_id}")
    # Control characters in a name would make the file's XML unreadable (pyxdf: "not well-formed").
    control = _outlet_with_channels(f"control\x01\x1b-{unique_id}", [{"label": "a"}])
    # 500 description values of 1.5 kB (750 kB in all), some named what XML cannot name (the XDF writer refuses those).
    info = pylsl.StreamInfo(f"many-{unique_id}", "EEG", 1, 100.0, pylsl.cf_float32, f"many-{unique_id}")
    for key in ("xmlish", "a:b"):
        info.desc().append_child_value(key, "odd name")
    for k in range(500):
        info.desc().append_child_value(f"k{k}", "v\x01" + "v" * 1500)
    info.desc().append_child_value("1st", "not XML")  # liblsl's parser drops the description from here on
    many = pylsl.StreamOutlet(info)

    path = tmp_path / "hostile.xdf"
    recorder = SessionRecorder(path, record_markers=False)
    for outlet in (big, control, many):
        assert recorder.add_stream(_described(outlet))["ok"]
    status = recorder.stop()
    assert status["recording"] is False and not status["reason"]
    assert path.stat().st_size < 200_000  # not the 1 MB value, 100,000 channel entries or 750 kB of values
    streams, _ = pyxdf.load_xdf(str(path))
    by_name = {s["info"]["name"][0].split("-")[0]: s["info"] for s in streams}
    assert set(by_name) == {"bigdesc", "control\ufffd\ufffd", "many"}
    desc = by_name["bigdesc"]["desc"][0]
    assert "notes" not in desc and [c["label"][0] for c in desc["channels"][0]["channel"]] == ["ch1", "ch2"]
    values = {k: v[0] for k, v in by_name["many"]["desc"][0].items() if k != "channels"}
    assert len(values) == MAX_DESC_VALUES and not {"xmlish", "a:b"} & set(values)
    assert all(len(v) == MAX_DESC_VALUE_CHARS and v.startswith("v\ufffdv") for v in values.values())


# -------------------------------------------------------------------------------------- 2. malformed metadata
CASES = {
    "missing labels": ([{"label": "Fp1"}, {"label": ""}, {"unit": "uV"}], None,
                       ["Fp1", "ch2", "ch3"], "2 channel(s) have no label"),
    "duplicated labels": ([{"label": "ECG"}, {"label": "ECG"}, {"label": "ecg"}], None,
                          ["ECG", "ECG#2", "ecg#3"], "duplicated channel labels renamed: ECG#2, ecg#3"),
    "control characters and HTML": ([{"label": "A\nB"}, {"label": "<b>x</b><img src=x>"}, {"label": "\x1b[2Jz"}],
                                    None, ["A\ufffdB", "<b>x</b><img src=x>", "\ufffd[2Jz"],
                                    "held control characters"),
    "nested channels": ([{"label": "A"}, {"label": "B"}], None, ["ch1", "ch2"], "lists 1 channel entries for 2"),
    "fewer entries than channels": ([{"label": "A"}, {"label": "B"}], 3, ["ch1", "ch2", "ch3"],
                                    "lists 2 channel entries for 3"),
    "more entries than channels": ([{"label": f"E{k}"} for k in range(5)], 2, ["ch1", "ch2"],
                                   "lists more than 2 channel entries for 2"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_channel_descriptions_fall_back_to_safe_labels_and_say_so(unique_id, case):
    entries, n_channels, labels, note = CASES[case]
    outlet = _outlet_with_channels(f"odd-{unique_id}", entries, n_channels, nested=case == "nested channels")
    pipeline = StreamPipeline(StreamSpec(f"odd-{unique_id}", _described(outlet)))
    notes = pipeline.connect(3.0)
    try:
        assert pipeline.reader.channel_labels == labels
        assert len(notes) == 1 and notes[0].startswith("channel description: ") and note in notes[0]
        assert outlet.wait_for_consumers(2.0)
        outlet.push_chunk(np.ones((20, len(labels)), np.float32).tolist())
        deadline = time.monotonic() + 2.0
        while pipeline.reader.samples_received < 20 and time.monotonic() < deadline:
            pipeline.poll()
            time.sleep(0.01)
        assert pipeline.reader.samples_received == 20  # the stream itself is monitored as usual
    finally:
        pipeline.close()


# ------------------------------------------------------------------------------------------- 3. absurd rates
def test_absurd_rates_are_listed_or_left_unseen_and_refused_in_one_line(unique_id):
    with pytest.raises(RuntimeError, match="could not create"):  # liblsl itself refuses a negative rate
        pylsl.StreamInfo(f"neg-{unique_id}", "EEG", 1, -5.0, pylsl.cf_float32, f"neg-{unique_id}")
    # 1 MHz rather than 1 GHz: liblsl preallocates for the rate and takes ~6 s to create a 1 GHz outlet (the
    # publisher's cost); the 1 GHz description is refused below as it is advertised.
    outlets = {rate: pylsl.StreamOutlet(pylsl.StreamInfo(f"rate-{unique_id}-{rate}", "EEG", 2, rate,
                                                         pylsl.cf_float32, f"rate-{unique_id}-{rate}"))
               for rate in (math.nan, math.inf, 1e6)}
    listed = {d.sfreq_hz: d for d in list_streams(wait_s=1.0) if d.source_id.startswith(f"rate-{unique_id}")}
    # liblsl (1.16) drops the answers of NaN and infinite rates, so discovery does not show those at all;
    # whatever is listed has its problems said and a summary.
    assert 1e6 in listed
    for d in listed.values():
        assert d.problems and d.summary()
    assert "nominal rate 1e+06 Hz (at most 100000 Hz)" in listed[1e6].problems[0]
    with pytest.raises(StreamMismatchError, match="is refused: nominal rate 1e") as err:
        StreamPipeline(StreamSpec("fast", listed[1e6])).connect(3.0)  # before: a 447 GiB display buffer
    _one_line_refusal(err)
    for outlet in outlets.values():  # an info in hand (or a peer speaking the protocol itself) is refused too
        with pytest.raises(StreamMismatchError, match="is refused: nominal rate") as err:
            StreamReader(outlet.get_info()).connect(2.0)
        _one_line_refusal(err)
    for rate in (math.nan, -math.inf, -5.0):  # what only a hand-made LSL peer could advertise
        forged = StreamDescription("forged", "EEG", 2, rate, "float32", "s", "h", "u")
        assert "a finite number >= 0 is needed" in forged.problems[0]
        with pytest.raises(StreamMismatchError, match="is refused"):
            forged.check_openable()
    assert "(at most 100000 Hz)" in StreamDescription("x", "EEG", 2, 1e9, "float32", "s", "h", "u").problems[0]
    assert "values/s" in StreamDescription("x", "EEG", 1024, 4096.0, "float32", "s", "h", "u").problems[0]
    assert not StreamDescription("x", "EEG", 256, 2048.0, "float32", "s", "h", "u").problems
    # String streams: liblsl receives every string whole, so they must stay narrow and slow.
    assert "at most 16" in StreamDescription("x", "Markers", 64, 0.0, "string", "s", "h", "u").problems[0]
    assert "at most 100)" in StreamDescription("x", "Markers", 1, 1000.0, "string", "s", "h", "u").problems[0]
    assert not StreamDescription("x", "Markers", 1, 0.0, "string", "s", "h", "u").problems


def test_stream_listing_in_the_terminal_shows_no_control_characters(unique_id):
    from click.testing import CliRunner

    from biostream.cli import cli

    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(f"term-{unique_id}" + EVIL, "EEG\x07", 1, 10.0, pylsl.cf_float32,
                                                 f"term-{unique_id}"))
    result = CliRunner().invoke(cli, ["streams", "--wait", "1"])
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.output.splitlines() if f"term-{unique_id}" in x]
    assert "\x1b" not in result.output and "\x07" not in result.output and "\u202e" not in result.output
    assert "<h1>big</h1>" in line  # shown as text (a terminal does not render HTML)
    del outlet


# ------------------------------------------------------------------------------- 4. name and source id collisions
def test_an_impostor_with_the_name_and_source_id_of_a_monitored_stream_is_never_taken_for_it(unique_id):
    name, sid = f"twin-{unique_id}", f"twin-{unique_id}"
    real = pylsl.StreamOutlet(make_stream_info(name, "ECG", 100.0, ["ECG"], ["mV"], source_id=sid))
    fake = pylsl.StreamOutlet(make_stream_info(name, "ECG", 100.0, ["ECG"], ["mV"], source_id=sid))
    real_d, fake_d = _described(real), _described(fake)
    assert real_d.uid != fake_d.uid and real_d.key == fake_d.key  # same name, source id, host: not the same outlet
    with pytest.raises(BadInputError, match=f"2 LSL streams match source_id='{sid}'"):
        resolve_selector(f"source_id={sid}", timeout_s=2.0)
    for _ in range(2):  # a stream picked from discovery is opened by its uid, whoever answers first
        reader = StreamReader(real_d).connect(3.0)
        assert reader.description.uid == real_d.uid
        reader.close()
    reader = StreamReader(real_d).connect(3.0)
    try:
        assert real.wait_for_consumers(2.0) and not fake.have_consumers()
        real.push_chunk([[1.0]] * 10)
        fake.push_chunk([[666.0]] * 10)
        got, deadline = [], time.monotonic() + 2.0
        while len(got) < 10 and time.monotonic() < deadline:
            chunk = reader.pull()
            if chunk is not None and chunk.n_samples:
                got += chunk.data[:, 0].tolist()
            time.sleep(0.01)
        assert got == [1.0] * 10
    finally:
        reader.close()


def test_a_recovering_reader_takes_only_the_same_outlet_or_a_like_one_from_the_same_host():
    def d(uid, host, name="s"):
        return StreamDescription(name, "ECG", 1, 100.0, "float32", "sid", host, uid)

    lost = d("u1", "lab-pc")
    assert pick_successor(lost, [d("u2", "attacker"), d("u1", "lab-pc")]) == 1  # the very outlet, back
    assert pick_successor(lost, [d("u1", "lab-pc"), d("u3", "lab-pc")]) == 1  # recreated (the lost one lingers)
    assert pick_successor(lost, [d("u2", "attacker"), d("u4", "other-pc")]) is None  # never another machine's
    # another stream of the same machine sharing the source id (pylsl's examples all use one) is not it either
    other = StreamDescription("BioSemi", "EEG", 8, 100.0, "float32", "sid", "lab-pc", "u5")
    assert pick_successor(lost, [other, d("u6", "lab-pc", name="s2")]) is None
    assert pick_successor(lost, [other, d("u1", "lab-pc")]) == 1


def test_an_impostor_of_our_prediction_stream_is_not_recorded_as_ours(unique_id, tmp_path):
    spec = InputInfo("ppg", ("BVP",), 50.0, 2.0, 1.0, ("a.u.",))
    model = ModelInput("f" * 64, "stress", ("baseline", "stress"), spec, 1.0)
    source = StreamDescription(f"wrist-{unique_id}", "PPG", 1, 64.0, "float32", f"wrist-{unique_id}", "h", "u")
    ours = PredictionOutlet(source, model, uuid.uuid4().hex)
    mine = ours.description
    # Everything a program on the network can read and copy: name, type, source id, layout, description.
    twin = pylsl.StreamOutlet(make_stream_info(mine.name, mine.type, 0.0, ["p_baseline", "p_stress", "label"],
                                               source_id=mine.source_id, manufacturer="biostream"))
    assert _described(twin).uid != mine.uid and _described(twin).source_id == mine.source_id
    path = tmp_path / "session.xdf"
    recorder = SessionRecorder(path, record_markers=False)
    try:
        assert recorder.add_stream(mine)["ok"]
        assert ours._outlet.wait_for_consumers(2.0) and not twin.have_consumers()
        t0 = pylsl.local_clock()
        for k in range(5):
            ours.push((0.25, 0.75), 1, t0 + k)
            twin.push_sample([9.0, 9.0, 9.0], t0 + k)
        time.sleep(0.8)
    finally:
        recorder.stop()
    streams, _ = pyxdf.load_xdf(str(path), synchronize_clocks=False)
    (recorded,) = streams
    assert recorded["info"]["uid"][0] and recorded["info"]["source_id"][0] == mine.source_id
    np.testing.assert_allclose(recorded["time_series"], [[0.25, 0.75, 1.0]] * 5)


# -------------------------------------------------------------------------------------------------- 5. strings
def test_huge_and_broken_strings_and_floods_cost_bounded_memory(unique_id, tmp_path):
    from biostream.runtime.pipeline import _MAX_MARKERS

    name = f"markers-{unique_id}"
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(name, "Markers", 1, 0.0, pylsl.cf_string, name))
    description = _described(outlet)
    pipeline = StreamPipeline(StreamSpec(name, description))
    pipeline.connect(3.0)
    path = tmp_path / "markers.xdf"
    recorder = SessionRecorder(path, record_markers=False)
    try:
        assert recorder.add_stream(description)["ok"]  # both inlets are open once these return
        assert outlet.wait_for_consumers(2.0)
        time.sleep(0.3)
        for _ in range(10):
            outlet.push_sample(["x" * 1_000_000])  # 1 MB per sample
        outlet.push_sample([b"\xff\xfe not UTF-8 \xc3"])
        outlet.push_sample(["<b>fine</b>"])
        got, deadline = [], time.monotonic() + 3.0
        while len(got) < 12 and time.monotonic() < deadline:
            pipeline.poll()
            got += pipeline.take_markers()
            time.sleep(0.01)
        labels = [m.label for m in got]
        assert len(labels) == 12 and all(len(x) <= MAX_STRING_CHARS for x in labels)
        assert labels[:10] == ["x" * MAX_STRING_CHARS] * 10
        assert labels[10].startswith("\ufffd\ufffd not UTF-8") and labels[11] == "<b>fine</b>"
        assert pipeline.reader.stats.n_truncated == 11

        # A flood: 6,000 markers pushed between two takes; the pipeline keeps the newest _MAX_MARKERS.
        for k in range(60):
            outlet.push_chunk([[f"m{k}-{j}"] for j in range(100)])
            time.sleep(0.01)
            for _ in range(3):
                pipeline.poll()
        for _ in range(20):
            time.sleep(0.005)
            pipeline.poll()
        kept = pipeline.take_markers()
        assert len(kept) <= _MAX_MARKERS and pipeline.markers_dropped > 0
        assert kept[-1].label == "m59-99"  # the newest survive
        time.sleep(0.6)
    finally:
        pipeline.close()
        status = recorder.stop()
    assert status["recording"] is False and not status["reason"]
    streams, _ = pyxdf.load_xdf(str(path))
    values = [row[0] for row in streams[0]["time_series"]]
    assert len(values) >= 12 and max(len(v) for v in values) <= MAX_STRING_CHARS


# -------------------------------------------------------------------------------------------------------- UI
def test_names_labels_and_markers_are_shown_as_text_never_as_html(qtbot):
    from biostream.runtime.records import Latency, Marker, Prediction
    from ui.panels import StreamsPanel
    from ui.timeline import PredictionTimeline

    panel = StreamsPanel()
    qtbot.addWidget(panel)
    ours = StreamDescription(EVIL, "Predictions", 3, 0.0, "float32", "biostream-x", "host", "uid-ours")
    twin = StreamDescription(EVIL, "Predictions", 3, 0.0, "float32", "biostream-x", "host", "uid-twin")
    panel.set_streams([ours, twin])
    panel.mark("uid-ours", "ours: stress predictions", "key")
    items = [panel.tree.topLevelItem(k) for k in range(panel.tree.topLevelItemCount())]
    by_uid = {item.data(0, 0x0100): item for item in items}  # Qt.UserRole
    assert by_uid["uid-ours"].text(4) == "ours: stress predictions" and by_uid["uid-twin"].text(4) == ""
    text, tip = by_uid["uid-twin"].text(0), by_uid["uid-twin"].toolTip(0)
    assert text.startswith("<img src='/etc/passwd'><h1>big</h1>\ufffd\ufffd[2J\ufffdevil")  # literally, one line
    assert tip.startswith("<p>") and "&lt;img" in tip and "<img" not in tip and "uid-twin" in tip

    timeline = PredictionTimeline()
    qtbot.addWidget(timeline)
    timeline.t0 = 0.0
    timeline.set_truth_stream("truth")
    timeline.add_stream(EVIL, "<i>task</i>", ("<b>a</b>", "b"))
    timeline.add_markers([Marker("truth", 0.5, "<h1>owned</h1>")])
    latency = Latency(*([0.0] * len(Latency.__dataclass_fields__)))
    timeline.add_predictions([Prediction(EVIL, "<i>task</i>", 0.0, 2.0, (0.9, 0.1), 0, ("<b>a</b>", "b"), "", (),
                                         latency)])
    row = timeline.rows[EVIL]
    state = row.state.text()
    assert "&lt;h1&gt;owned&lt;/h1&gt;" in state and "<h1>" not in state and "<img" not in state
    assert "&lt;b&gt;a&lt;/b&gt;" in state and "<b>a</b>" not in state
    assert "&lt;img" in row.plot.titleLabel.text and "<img" not in row.plot.titleLabel.text
