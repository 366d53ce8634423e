"""``studio``: the AudioSeal Studio API from a shell.

    studio embed speech.wav --message 1A2B                 # writes speech-watermarked.wav here
    studio embed recordings/ --message 1A2B -c 4 --out marked/   # a whole directory, with a progress bar
    studio detect marked/                                  # one line per file: found?, message
    studio emotion call.wav --json
    studio beatsync dance.mp4 track.mp3 --out synced.mp4
    studio jobs --status failed
    studio usage

Configuration: ``--api-key``/``$STUDIO_API_KEY`` and ``--base-url``/``$STUDIO_BASE_URL`` (default: the quick
start, ``http://127.0.0.1:8000``). ``--json`` prints machine-readable results on stdout; progress and errors
go to stderr. Given a directory, ``embed``, ``detect`` and ``emotion`` process each file in it (not
recursing, hidden files skipped) with ``--concurrency`` jobs at once; a file that fails is reported with its
error code and the others go on. Exit status: 0 when every file succeeded, 1 when any failed, 2 for a usage
or configuration error.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from audioseal_studio.client import DEFAULT_BASE_URL, Client, RetryEvent
from audioseal_studio.errors import APIError, StudioError, WaitTimeoutError
from audioseal_studio.models import BeatsyncResult, DetectionResult, EmbedResult, EmotionResult, Job
from audioseal_studio.retries import RetryPolicy

app = typer.Typer(
    name="studio", help="AudioSeal Studio from the command line: watermark, detect, emotion, beat-sync.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)

ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", envvar="STUDIO_API_KEY", help="API key (ask_…).", show_default=False),
]
BaseUrl = Annotated[str, typer.Option("--base-url", envvar="STUDIO_BASE_URL", help="The server.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
Concurrency = Annotated[
    int, typer.Option("--concurrency", "-c", min=1, max=64, help="Jobs at once in directory mode.")
]
JobTimeout = Annotated[float, typer.Option("--timeout", min=1, help="Seconds to wait for each job.")]

EXIT_FAILED = 1
EXIT_USAGE = 2


@dataclass
class Outcome:
    """What happened to one input file."""

    path: Path
    job: Job | None = None
    output: Path | None = None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_code is None

    def to_json(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "ok": self.ok,
            "job": self.job.model_dump(mode="json") if self.job else None,
            "output": str(self.output) if self.output else None,
            "error": {"code": self.error_code, "message": self.error_message} if not self.ok else None,
        }


# A job-creating call for one file: (client, path, wait seconds) -> job.
Submit = Callable[[Client, Path, float], Job]


# --- commands ------------------------------------------------------------------------------------------------


@app.command()
def embed(
    path: Annotated[Path, typer.Argument(exists=True, help="An audio file, or a directory of them.")],
    message: Annotated[str | None, typer.Option("--message", "-m", help="4 hex digits, e.g. 1A2B.")] = None,
    output_format: Annotated[str | None, typer.Option("--format", help="wav, flac, ogg, mp3 or m4a.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Output file, or an existing directory (default: here); given a directory of "
        "inputs, the directory to fill (default: <DIR>-watermarked).",
    )] = None,
    concurrency: Concurrency = 4,
    timeout: JobTimeout = 600.0,
    api_key: ApiKey = None,
    base_url: BaseUrl = DEFAULT_BASE_URL,
    json_output: JsonOut = False,
) -> None:
    """Embed a watermark and download the watermarked audio."""

    def submit(client: Client, file: Path, wait: float) -> Job:
        return client.embed(file, message=message, output_format=output_format, wait=wait)

    default_out = path.with_name(f"{path.name}-watermarked") if path.is_dir() else Path.cwd()
    _run(path, submit, out or default_out, True, concurrency, timeout, api_key, base_url, json_output)


@app.command()
def detect(
    path: Annotated[Path, typer.Argument(exists=True, help="An audio file, or a directory of them.")],
    concurrency: Concurrency = 4,
    timeout: JobTimeout = 600.0,
    api_key: ApiKey = None,
    base_url: BaseUrl = DEFAULT_BASE_URL,
    json_output: JsonOut = False,
) -> None:
    """Detect a watermark and decode its message."""

    def submit(client: Client, file: Path, wait: float) -> Job:
        return client.detect(file, wait=wait)

    _run(path, submit, None, False, concurrency, timeout, api_key, base_url, json_output)


@app.command()
def emotion(
    path: Annotated[Path, typer.Argument(exists=True, help="A speech file, or a directory of them.")],
    granularity: Annotated[str, typer.Option(help="utterance or frame.")] = "utterance",
    embedding: Annotated[bool, typer.Option("--embedding", help="Also download the embedding (.npy).")] = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Where embeddings go (default: here).")] = None,
    concurrency: Concurrency = 4,
    timeout: JobTimeout = 600.0,
    api_key: ApiKey = None,
    base_url: BaseUrl = DEFAULT_BASE_URL,
    json_output: JsonOut = False,
) -> None:
    """Recognise the emotion in speech."""

    def submit(client: Client, file: Path, wait: float) -> Job:
        return client.analyze_emotion(file, granularity=granularity, extract_embedding=embedding, wait=wait)

    _run(path, submit, out or Path.cwd(), embedding, concurrency, timeout, api_key, base_url, json_output)


@app.command()
def beatsync(
    video: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The dance video (MP4, MOV).")],
    music: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The clean music track.")],
    trim_silence: Annotated[bool, typer.Option("--trim-silence")] = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output file, or an existing directory.")] = None,
    timeout: JobTimeout = 900.0,
    api_key: ApiKey = None,
    base_url: BaseUrl = DEFAULT_BASE_URL,
    json_output: JsonOut = False,
) -> None:
    """Align a dance video to its music and download the synced video."""

    def submit(client: Client, file: Path, wait: float) -> Job:
        return client.beatsync(file, music, trim_silence=trim_silence, wait=wait)

    _run(video, submit, out or Path.cwd(), True, 1, timeout, api_key, base_url, json_output)


@app.command()
def jobs(
    status: Annotated[str | None, typer.Option(help="queued, running, succeeded, failed or canceled.")] = None,
    kind: Annotated[str | None, typer.Option(help="watermark_embed, watermark_detect, emotion, beatsync.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 20,
    api_key: ApiKey = None,
    base_url: BaseUrl = DEFAULT_BASE_URL,
    json_output: JsonOut = False,
) -> None:
    """List your jobs, newest first."""
    with _client(api_key, base_url, _stderr()) as client:
        found = _or_exit(lambda: list(client.iter_jobs(status=status, kind=kind, page_size=min(limit, 100),
                                                       limit=limit)))
    if json_output:
        _print_json([job.model_dump(mode="json") for job in found])
        return
    # The id is never wrapped: people paste it back into other commands.
    table = Table(Column("id", no_wrap=True, min_width=36), "kind", "status", "created", "file", "result")
    for job in found:
        created = job.created_at.strftime("%Y-%m-%d %H:%M:%S") if job.created_at else ""
        table.add_row(job.id, job.kind, _status_text(job.status), created, escape(str(job.input.get("filename") or
                      "")), escape(_summary(job)))
    Console().print(table)


@app.command()
def usage(
    api_key: ApiKey = None,
    base_url: BaseUrl = DEFAULT_BASE_URL,
    json_output: JsonOut = False,
) -> None:
    """This billing period's minutes and your plan's limits."""
    with _client(api_key, base_url, _stderr()) as client:
        found = _or_exit(client.usage)
    if json_output:
        _print_json(found.model_dump(mode="json"))
        return
    console = Console()
    minutes = found.minutes
    period = (f", period {found.period.start:%Y-%m-%d} to {found.period.end:%Y-%m-%d}"
              if found.period.start and found.period.end else "")
    plan = escape(found.plan.name or found.plan.code)
    console.print(f"Plan [bold]{plan}[/] ({escape(found.subscription.status)}){period}", highlight=False)
    console.print(f"Minutes: {minutes.used:.2f} used, {minutes.reserved:.2f} reserved, "
                  f"{minutes.included:.2f} included, {minutes.remaining:.2f} remaining")
    if found.by_kind:
        table = Table("kind", "jobs", "minutes")
        for row in found.by_kind:
            table.add_row(row.kind, str(row.jobs), f"{row.minutes:.2f}")
        console.print(table)


# --- the file runner ---------------------------------------------------------------------------------------------


def _run(
    path: Path, submit: Submit, out: Path | None, download: bool, concurrency: int, timeout: float,
    api_key: str | None, base_url: str, json_output: bool,
) -> None:
    """Process a file, or every file of a directory with a progress bar; print the results; exit 1 if any
    failed."""
    err = _stderr()
    directory = path.is_dir()
    files = _files_in(path) if directory else [path]
    if not files:
        err.print(f"error: {escape(str(path))} has no files", soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)
    if download and out is not None and directory:
        out.mkdir(parents=True, exist_ok=True)
    with _client(api_key, base_url, err, max_connections=max(concurrency, 4)) as client:
        if directory:
            outcomes = _run_many(client, files, submit, out if download else None, concurrency, timeout, err)
        else:
            outcomes = [_process(client, files[0], submit, out if download else None, timeout)]
            if not outcomes[0].ok:
                _report_failure(err, outcomes[0])
    _print_outcomes(outcomes, directory, json_output, err)
    if not all(o.ok for o in outcomes):
        raise typer.Exit(EXIT_FAILED)


def _run_many(
    client: Client, files: list[Path], submit: Submit, out: Path | None, concurrency: int, timeout: float,
    err: Console,
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    failed = 0
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn())
    with Progress(*columns, console=err) as progress:
        task = progress.add_task(f"{len(files)} files", total=len(files), failed=0)
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="studio") as pool:
            futures = [pool.submit(_process, client, file, submit, out, timeout) for file in files]
            for future in as_completed(futures):
                outcome = future.result()
                outcomes.append(outcome)
                if not outcome.ok:
                    failed += 1
                    _report_failure(progress.console, outcome)
                progress.update(task, advance=1, failed=failed)
    order = {file: i for i, file in enumerate(files)}
    return sorted(outcomes, key=lambda o: order[o.path])


def _process(client: Client, file: Path, submit: Submit, out: Path | None, timeout: float) -> Outcome:
    """Submit one file, wait for its job, download its output; every failure becomes the outcome's error."""
    job: Job | None = None
    try:
        job = submit(client, file, timeout)
        if not job.is_final:
            raise WaitTimeoutError(job, timeout)
        if not job.succeeded:
            code = job.error.code if job.error else job.status.upper()
            return Outcome(file, job, error_code=code, error_message=job.error.message if job.error else job.status)
        output = client.download_output(job, out) if out is not None and job.output_url else None
        return Outcome(file, job, output)
    except APIError as exc:
        return Outcome(file, job, error_code=exc.code, error_message=exc.message)
    except WaitTimeoutError as exc:
        return Outcome(file, exc.job, error_code="WAIT_TIMEOUT", error_message=exc.message)
    except StudioError as exc:
        return Outcome(file, job, error_code=type(exc).__name__, error_message=exc.message)
    except OSError as exc:  # the local side: unreadable input, unwritable output
        return Outcome(file, job, error_code="LOCAL_ERROR", error_message=str(exc))


def _files_in(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))


# --- output --------------------------------------------------------------------------------------------------


def _report_failure(console: Console, outcome: Outcome) -> None:
    console.print(f"[red]✗[/] {escape(outcome.path.name)}: {outcome.error_code}: {escape(outcome.error_message or '')}",
                  soft_wrap=True, highlight=False)


def _print_outcomes(outcomes: list[Outcome], directory: bool, json_output: bool, err: Console) -> None:
    if json_output:
        _print_json([o.to_json() for o in outcomes] if directory else outcomes[0].to_json())
        return
    console = Console()
    for o in outcomes:
        if o.ok:
            where = f" -> {escape(str(o.output))}" if o.output else ""
            console.print(f"[green]✓[/] {escape(o.path.name)}: {escape(_summary(o.job))}{where}  [dim]job "
                          f"{o.job.id if o.job else ''}[/]", soft_wrap=True, highlight=False)
    if directory:
        failed = sum(not o.ok for o in outcomes)
        err.print(f"{len(outcomes) - failed} succeeded, {failed} failed", soft_wrap=True, highlight=False)


def _summary(job: Job | None) -> str:
    """One line about a job's result, for people."""
    if job is None:
        return ""
    result = job.result
    if job.error:
        return f"{job.error.code}: {job.error.message}"
    if isinstance(result, EmbedResult):
        snr = f", SNR {result.snr_db:.1f} dB" if result.snr_db is not None else ""
        return f"message {result.message}{snr}"
    if isinstance(result, DetectionResult):
        if not result.detected:
            return result.summary or "no watermark"
        return f"{result.summary or 'watermark found'}, message {result.message}"
    if isinstance(result, EmotionResult):
        return f"{result.top.label} ({result.top.score:.2f})" if result.top else ""
    if isinstance(result, BeatsyncResult):
        return f"offset {result.offset_seconds:+.3f} s" if result.offset_seconds is not None else ""
    return job.status


def _status_text(status: str) -> str:
    colour = {"succeeded": "green", "failed": "red", "canceled": "yellow"}.get(status, "cyan")
    return f"[{colour}]{status}[/]"


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


# --- plumbing ------------------------------------------------------------------------------------------------


def _stderr() -> Console:
    return Console(stderr=True)


def _client(api_key: str | None, base_url: str, err: Console, **kwargs: Any) -> Client:
    def tell(event: RetryEvent) -> None:
        err.print(f"[dim]retry {event.attempt} in {event.delay:.1f} s after {escape(event.reason)}[/]",
                  soft_wrap=True, highlight=False)

    try:
        # Patient: a directory of files meets the plan's rate and concurrency limits (429 with Retry-After).
        return Client(api_key, base_url=base_url, on_retry=tell, retry=RetryPolicy(max_retries=10), **kwargs)
    except StudioError as exc:
        err.print(f"error: {escape(exc.message)}", soft_wrap=True, highlight=False)
        raise typer.Exit(EXIT_USAGE) from exc


def _or_exit(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except StudioError as exc:
        _stderr().print(f"error: {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(EXIT_FAILED) from exc


def main() -> None:
    """The ``studio`` console script."""
    app()
