"""The ``biostream`` command line: the composition root.

Each subcommand imports what it needs inside its body, so ``biostream streams`` never loads torch or Qt.
Bodies only parse arguments and call library code. Exit codes (see :func:`main`): 0 success, 2 bad usage or
input (one line on stderr saying why), 1 unexpected failure (one line pointing to the crash log), 130 Ctrl-C.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Sequence

import click

logger = logging.getLogger("biostream")

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


class FiniteNumber(click.ParamType):
    """A finite float above ``minimum`` (click's FloatRange lets ``nan`` and ``inf`` through)."""

    name = "number"

    def __init__(self, minimum: float = 0.0, *, inclusive: bool = False) -> None:
        self.minimum = minimum
        self.inclusive = inclusive

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        """Return ``value`` as a float, or fail with a message naming the bound."""
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        above = number >= self.minimum if self.inclusive else number > self.minimum
        if not (math.isfinite(number) and above):
            bound = ">=" if self.inclusive else ">"
            self.fail(f"must be a finite number {bound} {self.minimum:g}, got {value!r}", param, ctx)
        return number


#: Seconds, rates and factors that must be > 0; offsets that must be >= 0.
POSITIVE = FiniteNumber(0.0)
NON_NEGATIVE = FiniteNumber(0.0, inclusive=True)


def _split_csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _parse_pairs(pairs: Sequence[str], what: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=what)
        out[key.strip()] = value.strip()
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--log-level",
    default=lambda: os.environ.get("BIOSTREAM_LOG_LEVEL", "WARNING"),
    show_default="WARNING (or $BIOSTREAM_LOG_LEVEL)",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Verbosity of the log on stderr.",
)
def cli(log_level: str) -> None:
    """Biostream: live cross-modal biosignal inference over Lab Streaming Layer."""
    _configure_logging(log_level)


@cli.command()
@click.option("--wait", "wait_s", default=1.0, show_default=True, type=POSITIVE, help="Seconds to listen for streams.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per stream instead of a table.")
def streams(wait_s: float, as_json: bool) -> None:
    """List the LSL streams visible from this machine."""
    import dataclasses
    import json

    from biostream.lsl import list_streams
    from devices.lsl_meta import safe_text

    found = list_streams(wait_s=wait_s)
    if as_json:
        for s in found:
            click.echo(json.dumps(dataclasses.asdict(s)))
        return
    if not found:
        click.echo(f"No LSL streams found within {wait_s:g} s.")
        return
    header = f"{'name':<28} {'type':<10} {'ch':>4} {'rate_hz':>9} {'format':<9} {'source_id':<30} host"
    click.echo(header)
    for s in found:  # names come from the network: no control characters (terminal escapes) reach the terminal
        rate = f"{s.sfreq_hz:g}" if s.sfreq_hz > 0 else "irreg."
        name, type_, source_id, host = (safe_text(v, 80) for v in (s.name, s.type, s.source_id, s.hostname))
        click.echo(
            f"{name:<28} {type_:<10} {s.n_channels:>4} {rate:>9} {s.channel_format:<9} {source_id:<30} {host}"
            + (f"  (cannot be monitored: {'; '.join(s.problems)})" if s.problems else "")
        )


@cli.command()
@click.option(
    "--scenario", required=True, type=click.Choice(["stress", "sleep", "gait"]), help="Latent state timeline to play."
)
@click.option(
    "--modalities", default="ecg,ppg", show_default=True, help="Comma-separated: ecg, ppg, eeg, emg, resp, acc."
)
@click.option("--duration", "duration_s", type=POSITIVE, default=None, help="Seconds to run (default: until Ctrl-C).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Subject seed (per-subject variation).")
@click.option(
    "--device", "devices", multiple=True, metavar="MODALITY=PROFILE",
    help="Device profile a modality plays, e.g. eeg=isruc_psg (see devices.profiles).",
)
@click.option("--no-artefacts", is_flag=True, help="Clean signals: no noise bursts, wander, powerline or lead-off.")
@click.option("--name-suffix", default="", help="Appended to stream names and source ids.")
@click.option("--dwell-scale", default=1.0, show_default=True, type=POSITIVE,
              help="Factor on how long each state lasts (0.3: stress states change about every minute).")
def simulate(
    scenario: str,
    modalities: str,
    duration_s: float | None,
    seed: int,
    devices: tuple[str, ...],
    no_artefacts: bool,
    name_suffix: str,
    dwell_scale: float,
) -> None:
    """Publish simulated paired physiology, one LSL outlet per modality, plus a marker stream of states."""
    from devices.live_sim import LiveSimulation

    live = LiveSimulation(
        scenario,
        _split_csv(modalities),
        seed=seed,
        devices=_parse_pairs(devices, "--device"),
        artefacts=not no_artefacts,
        name_suffix=name_suffix,
        dwell_scale=dwell_scale,
    )
    with live:
        for line in live.describe():
            click.echo(line)
        click.echo("Streaming; Ctrl-C to stop." if duration_s is None else f"Streaming for {duration_s:g} s.")
        try:
            live.run(duration_s=duration_s, on_state=lambda t, label: click.echo(f"[{t:8.1f} s] state: {label}"))
        except KeyboardInterrupt:
            pass
        click.echo(f"Pushed samples: {dict(zip(live.stream_names, live.player.samples_pushed))}")


@cli.command()
@click.argument("path", type=click.Path(path_type=str))
@click.option(
    "--format", "fmt", default="auto", show_default=True,
    type=click.Choice(["auto", "xdf", "edf", "bdf", "csv", "wesad", "isruc", "fog"]), help="Recording format.",
)
@click.option("--speed", default=1.0, show_default=True, type=POSITIVE, help="Playback speed factor.")
@click.option("--loop", is_flag=True, help="Start over at the end (a 'loop <k>' marker at each boundary).")
@click.option("--start", "start_s", default=0.0, show_default=True, type=NON_NEGATIVE, help="Skip this many seconds.")
@click.option("--duration", "duration_s", type=POSITIVE, default=None,
              help="Stop after this many wall-clock seconds.")
@click.option("--name-suffix", default="", help="Appended to stream names and source ids.")
def replay(
    path: str, fmt: str, speed: float, loop: bool, start_s: float, duration_s: float | None, name_suffix: str
) -> None:
    """Publish a recording's streams as LSL outlets with their original timing; labels as markers."""
    from tqdm import tqdm

    from devices.formats import read_recording
    from devices.replay import RecordingReplay

    recording = read_recording(path, format=fmt)
    with RecordingReplay(recording, speed=speed, loop=loop, start_s=start_s, name_suffix=name_suffix) as player:
        for s in recording.streams:
            rate = f"{s.nominal_srate:g} Hz" if s.is_regular else "irregular"
            name = s.name + name_suffix
            click.echo(f"  {name:<30} {s.type:<10} {s.n_channels:>3} ch  {rate:<10} {s.n_samples} samples")
        # Into a log file (not a terminal) a line every 30 s, not a carriage-return update every 0.1 s.
        bar = tqdm(total=round(player.pass_span_s, 1), unit="s", desc="replay", file=sys.stderr,
                   mininterval=0.5 if sys.stderr.isatty() else 30.0)

        def progress(position_s: float, span_s: float) -> None:
            bar.update(round(position_s, 1) - bar.n)  # update(), not refresh(): it keeps to mininterval

        try:
            replayed = player.run(duration_s=duration_s, on_progress=progress)
        except KeyboardInterrupt:
            replayed = player.player.elapsed_rel_s()
        bar.close()
        click.echo(f"Replayed {replayed:.1f} s of '{path}' ({player.passes_queued} pass(es)).")


@cli.command()
@click.option("--bundle", required=True, help="Bridge bundle: a .bxb path, or 'demo' for the shipped one.")
@click.option(
    "--stream", "streams", multiple=True, metavar="KEY=VALUE",
    help="Stream to monitor, e.g. type=PPG or name='Polar H10 ECG' (repeatable). Default: every visible stream "
    "of the bundle's modality.",
)
@click.option("--headless", is_flag=True, help="No window: print predictions and a summary.")
@click.option("--duration", "duration_s", type=POSITIVE, default=None, help="Seconds to run (default: until Ctrl-C).")
@click.option("--record", "record_path", type=click.Path(dir_okay=False), default=None,
              help="Record raw streams, predictions and markers to this XDF file.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per prediction, and a JSON summary last.")
@click.option("--hop-s", type=POSITIVE, default=None, help="Seconds between windows (default: the bundle's).")
@click.option("--channel", "channels", multiple=True, metavar="BUNDLE_LABEL=STREAM_LABEL",
              help="Which stream channel feeds a bundle channel, e.g. BVP=PPG2 (repeatable).")
@click.option("--ray-address", default=None, help="Join this Ray cluster (HOST:PORT) instead of starting one.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Inference device (auto: CUDA where the inference node has a GPU).")
def monitor(
    bundle: str, streams: tuple[str, ...], headless: bool, duration_s: float | None, record_path: str | None,
    as_json: bool, hop_s: float | None, channels: tuple[str, ...], ray_address: str | None, device: str,
) -> None:
    """Run a bridged model on live LSL streams: predictions every hop, health, recording (a window, or headless)."""
    channel_map = _parse_pairs(channels, "--channel")
    if not headless and not as_json and _display_or_say("monitor"):
        from ui.app import run_monitor_window

        sys.exit(run_monitor_window(bundle=bundle, selectors=list(streams), hop_s=hop_s, channel_map=channel_map,
                                    record_path=record_path, duration_s=duration_s, ray_address=ray_address,
                                    device=device))
    from biostream.runtime.headless import run_monitor

    code = run_monitor(
        bundle=bundle, selectors=list(streams), duration_s=duration_s, record_path=record_path, as_json=as_json,
        hop_s=hop_s, channel_map=channel_map, ray_address=ray_address, device=device,
    )
    sys.exit(code)


@cli.command()
@click.option("--headless", is_flag=True, help="No window: print predictions against the true state.")
@click.option("--duration", "duration_s", type=POSITIVE, default=None, help="Seconds to run (default: until closed).")
@click.option("--seed", default=None, type=click.IntRange(min=0), help="Simulated wearer (default: the demo's).")
def demo(headless: bool, duration_s: float | None, seed: int | None) -> None:
    """The embedded default: a simulated wearer, the shipped stress model bridged from ECG to PPG, live."""
    from biostream.runtime.demo import DEMO_SEED

    seed = DEMO_SEED if seed is None else seed
    if not headless and _display_or_say("demo"):
        from ui.app import run_demo

        sys.exit(run_demo(duration_s=duration_s, seed=seed))
    from biostream.runtime.demo import run_demo_headless

    run_demo_headless(duration_s=duration_s, seed=seed)


@cli.command()
def gui() -> None:
    """The desktop app: streams, signals, predictions, health, models, recording."""
    if not _display_or_say("gui", fallback=""):
        raise click.UsageError("the desktop app needs a display (DISPLAY or WAYLAND_DISPLAY is not set)")
    from ui.app import run_gui

    sys.exit(run_gui())


def _display_or_say(command: str, fallback: str = "running headless") -> bool:
    """Whether a window can be shown; if not, say so in one line (and what happens instead)."""
    if sys.platform.startswith(("linux", "freebsd")) and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        if fallback:
            click.echo(f"biostream {command}: no display (DISPLAY and WAYLAND_DISPLAY are not set); {fallback}",
                       err=True)
        return False
    return True


@cli.command()
@click.argument("bundle")
def info(bundle: str) -> None:
    """Print and validate a bridge bundle (a path, or 'demo' for the shipped one)."""
    from bridges.bundle import bundle_summary, read_bundle

    for line in bundle_summary(read_bundle(bundle)):
        click.echo(line)


def _add_bridge_group() -> None:
    # bridges.cli imports only click at module level; torch loads inside each step.
    from bridges.cli import bridge

    cli.add_command(bridge)


_add_bridge_group()


def _command_name(args: Sequence[str]) -> str:
    """The subcommand ``args`` run (``"bridge train"``), read by walking the command groups."""
    names: list[str] = []
    command: click.Command = cli
    for arg in args:
        if isinstance(command, click.Group) and arg in command.commands:
            names.append(arg)
            command = command.commands[arg]
    return " ".join(names) or "biostream"


def _one_line(text: str) -> str:
    """``text`` on one line (its whitespace runs, newlines included, become single spaces)."""
    return " ".join(text.split())


def _first_line(err: BaseException) -> str:
    """The first line of an error's message that is not traceback (a message is one line by contract)."""
    for line in str(err).splitlines():
        if line.strip() and not line.startswith(("Traceback", "  ")):
            return line.strip()
    return type(err).__name__


def _show_usage_error(err: click.ClickException) -> None:
    """One line on stderr for a click usage error (a bare ``biostream`` still prints the help)."""
    if type(err).__name__ == "NoArgsIsHelpError":  # click >= 8.2: the help text is the message
        err.show()
        return
    ctx = getattr(err, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    click.echo(f"biostream: error: {_one_line(err.format_message())}{hint}", err=True)


def _report_internal_error(err: Exception, args: Sequence[str]) -> None:
    """Say in one line that biostream failed (not the user), and where the traceback was written."""
    from biostream.crashlog import write_crash_log

    what = f"biostream: internal error ({type(err).__name__}): this is a bug in biostream, not in your input"
    try:
        path = write_crash_log(err, args, _command_name(args))
    except OSError as log_err:
        click.echo(f"{what}; the crash log could not be written ({log_err}), so the traceback follows",
                   err=True)
        import traceback

        traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
        return
    click.echo(f"{what}; the traceback is in {path}", err=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line and exit with its code.

    Exit codes: 0 success; 2 bad usage or bad input (:class:`~devices.errors.BadInputError` and its subclasses,
    one line on stderr naming the thing and the problem); 1 an unexpected failure, i.e. a bug in biostream (one
    line on stderr pointing to the crash log that holds the traceback, see :mod:`biostream.crashlog`); 130
    interrupted (Ctrl-C).
    """
    from devices.errors import BadInputError

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = cli.main(args=args, prog_name="biostream", standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as err:
        _show_usage_error(err)
        sys.exit(EXIT_BAD_INPUT)
    except BadInputError as err:
        click.echo(f"biostream: error: {_first_line(err)}", err=True)
        logger.debug("bad input", exc_info=True)
        sys.exit(EXIT_BAD_INPUT)
    except Exception as err:  # noqa: BLE001 - anything else is our bug: one line here, the traceback in a file
        _report_internal_error(err, args)
        sys.exit(EXIT_FAILURE)
    sys.exit(code if isinstance(code, int) else EXIT_OK)
