"""``make bench``: every benchmark, one after the other, then one summary table.

First the inputs several scripts share are built once (``benchmarks/inputs.py``: the
1,000,000-check-in benchmark ledger and the smaller ones, the takeover's ledgers and stores),
two at a time, into ``benchmarks/.work/suite/inputs``; the scripts that read them start from a
copy (``--inputs``); meanwhile the crash soak runs (its figure is a verdict, not a time).
Then each step runs alone, as a subprocess, its output shown and kept in
``benchmarks/.work/suite/logs/<step>.log``, its wall and CPU time (its processes', waited for)
recorded. A step that fails stops the suite (exit 1, the step named) unless ``--keep-going``.
At the end, the summary table of every figure (``benchmarks/summary.py``), with the suite's own
rows: each step's time and the whole run against its 15-minute target (issue 9).

Usage: python benchmarks/suite.py [--list] [--only STEP ...] [--keep-going] [--reuse-inputs]
"""

import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import summary
from benchmarks.figures import FIGURES, Figures, at_most
from benchmarks.inputs import ledger_name, takeover_ledger_name, takeover_store_name

HERE = Path(__file__).resolve().parent
SUITE = HERE / ".work" / "suite"
INPUTS = SUITE / "inputs"
LOGS = SUITE / "logs"
TARGET_MINUTES = 15

Input = tuple[str, tuple[int, ...]]
"""What ``benchmarks/inputs.py`` builds: its kind and sizes."""

LEDGER_1M: Input = ("ledger", (1000, 1_000_000))
LEDGER_10K: Input = ("ledger", (1000, 10_000))
LEDGER_200K: Input = ("ledger", (1000, 200_000))
TAKEOVER_1M: Input = ("takeover", (12, 100, 1_000_000))
TAKEOVER_10K: Input = ("takeover", (12, 100, 10_000))


SOAK = ("--kills", "10", "--pause-every", "5", "--max-gap", "1")
"""The crash soak beside the inputs: 8 SIGKILLs and 2 pauses of 3 workers while the
submissions stream in, sized to end about with the inputs (``kafka_crash_soak.py``'s
defaults, 24 and 6, make a longer soak of its own)."""
ALONE = ("kafka_end_to_end.py", "kafka_floor.py", "kafka_backlog_memory.py")
"""Scripts not in the suite (each runs alone): ``kafka_end_to_end.py`` judges no target (it
compares the Kafka path with the embedded one), ``kafka_floor.py``'s runs are in the
``kafka_throughput`` step (``--floor``: the real workers run once), and
``kafka_backlog_memory.py`` is a memory study."""


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    script: str
    args: tuple[str, ...] = ()
    inputs: tuple[Input, ...] = ()
    """What the step reads from the suite's inputs (given ``--inputs``)."""
    beside_inputs: bool = False
    """Runs while the inputs are built: a step whose figure is a verdict, not a time."""

    def command(self) -> list[str]:
        given = ("--inputs", str(INPUTS)) if self.inputs else ()
        return [sys.executable, str(HERE / self.script), *self.args, *given]


STEPS = (
    Step("submit", "submit_throughput.py", ("--lines", "100000")),
    Step("command_latency", "command_latency.py",
         ("--check-ins", "10000,1000000", "--samples", "7"), (LEDGER_10K, LEDGER_1M)),
    Step("verify", "verify_throughput.py", ("--check-ins", "200000"), (LEDGER_200K,)),
    Step("projections", "projection_throughput.py",
         ("--key-results", "1000", "--check-ins", "1000000", "--samples", "10",
          "--cli-samples", "3"), (LEDGER_1M,)),
    Step("catch_up", "catch_up_latency.py", ("--sizes", "10000,1000000", "--rounds", "3"),
         (LEDGER_10K, LEDGER_1M)),
    Step("kept_read", "kept_read_latency.py", ("--rounds", "6")),
    Step("serve_reads", "serve_reads.py", ("--rounds", "4")),
    Step("takeover", "takeover_cost.py", ("--sizes", "10000,1000000", "--rounds", "7"),
         (TAKEOVER_10K, TAKEOVER_1M)),
    Step("kafka_crash_soak", "kafka_crash_soak.py", SOAK, beside_inputs=True),
    Step("kafka_throughput", "kafka_throughput.py", ("--floor",)),
    Step("kafka_failover", "kafka_failover.py", ("--kills", "10")),
    Step("kafka_worker_start", "worker_start.py", ("--rounds", "5")),
    Step("kafka_restore", "kafka_restore.py",
         ("--events", "1000000", "--ratio", "--no-fold-largest"), (TAKEOVER_1M,)),
    Step("http_intake", "http_intake.py",
         ("--seconds", "60", "--anchor-seconds", "5", "--anchor-events", "100000")),
)  # fmt: skip
"""The whole set, in order (a step ``beside_inputs`` first, while the inputs are built);
sizes as the issues name them."""


@dataclass(slots=True)
class Timed:
    name: str
    wall: float
    cpu: float
    code: int
    notes: list[str] = field(default_factory=list)


def _started(command: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # its lines as they come
    )


def _waited(process: subprocess.Popen[str]) -> tuple[int, float]:
    """Exit code and CPU seconds (user + system) of the process and the descendants it
    waited for (its own rusage: right when other commands run beside it)."""
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_utime + usage.ru_stime


def run(name: str, command: list[str], console: Console, log: Path) -> Timed:
    """One command, its output shown and kept in ``log``: wall and CPU seconds, exit code."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w") as kept:
        kept.write(" ".join(command) + "\n")
        process = _started(command)
        assert process.stdout is not None
        for line in process.stdout:
            kept.write(line)
            console.out(line, end="", highlight=False)
        code, cpu = _waited(process)
    return Timed(name, time.perf_counter() - start, cpu, code)


def build_inputs(needed: list[Input], reuse: bool, console: Console) -> Timed:
    """Build ``needed`` into :data:`INPUTS`, two at a time, the longest first."""
    if not reuse:
        shutil.rmtree(INPUTS, ignore_errors=True)
    INPUTS.mkdir(parents=True, exist_ok=True)
    todo = [item for item in needed if not (reuse and _built(item))]
    todo.sort(key=lambda item: -item[1][-1])
    start = time.perf_counter()
    failed: list[str] = []
    cpu = [0.0]
    lock = threading.Lock()

    def lane() -> None:
        while True:
            with lock:
                if not todo:
                    return
                kind, sizes = todo.pop(0)
            label = f"{kind} {' '.join(map(str, sizes))}"
            command = [sys.executable, str(HERE / "inputs.py"), str(INPUTS), kind,
                       *map(str, sizes)]  # fmt: skip
            process = _started(command)
            output = process.stdout.read() if process.stdout is not None else ""
            code, used = _waited(process)
            with lock:
                console.out(output, end="", highlight=False)
                cpu[0] += used
                if code:
                    failed.append(label)

    lanes = [threading.Thread(target=lane) for _ in range(2)]
    for thread in lanes:
        thread.start()
    for thread in lanes:
        thread.join()
    return Timed("inputs", time.perf_counter() - start, cpu[0], len(failed),
                 [f"failed: {', '.join(failed)}"] if failed else [])  # fmt: skip


def _built(item: Input) -> bool:
    kind, sizes = item
    if kind == "ledger":
        return (INPUTS / ledger_name(*sizes)).exists()
    return (INPUTS / takeover_ledger_name(*sizes)).exists() and (
        INPUTS / takeover_store_name(*sizes)
    ).exists()


app = typer.Typer(add_completion=False)


@app.command()
def main(
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Run only this step (repeatable).")
    ] = None,
    list_steps: Annotated[bool, typer.Option("--list", help="List the steps and exit.")] = False,
    keep_going: Annotated[
        bool, typer.Option("--keep-going", help="Run the other steps after one fails.")
    ] = False,
    reuse_inputs: Annotated[
        bool, typer.Option("--reuse-inputs", help="Keep inputs a previous run built.")
    ] = False,
) -> None:
    """Run the benchmarks one after the other, then print one summary table."""
    console = Console(width=160)
    if list_steps:
        for step in STEPS:
            console.print(f"{step.name:<18} python benchmarks/{step.script} {' '.join(step.args)}")
        # On stderr: stdout lists the steps only, one a line, for scripts that read it.
        Console(stderr=True).print(f"not in the suite (each runs alone): {', '.join(ALONE)}")
        return
    known = {step.name for step in STEPS}
    unknown = sorted(set(only or ()) - known)
    if unknown:
        raise typer.BadParameter(f"unknown step {', '.join(unknown)} (--list lists them)")
    steps = [step for step in STEPS if not only or step.name in only]
    whole = len(steps) == len(STEPS)
    if whole:  # the table is this run's alone
        shutil.rmtree(FIGURES, ignore_errors=True)
    started = time.perf_counter()
    timed: list[Timed] = []
    needed = list(dict.fromkeys(item for step in steps for item in step.inputs))
    beside = [step for step in steps if step.beside_inputs] if needed else []
    steps = beside + [step for step in steps if step not in beside]
    if needed:
        alongside = f", while {', '.join(s.name for s in beside)} runs" if beside else ""
        console.rule(f"[bold]inputs: {len(needed)} built once, two at a time{alongside}")
        built: list[Timed] = []
        builder = threading.Thread(
            target=lambda: built.append(build_inputs(needed, reuse_inputs, console))
        )
        builder.start()
        timed += [_step(step, 1 + n, len(steps), console, started) for n, step in
                  enumerate(beside)]  # fmt: skip
        builder.join()
        if not built:
            raise SystemExit("make bench FAILED: building the inputs raised (see above)")
        for result in timed:
            result.notes.append("while the inputs were built")
        timed.insert(0, built[0])
        if beside:
            built[0].notes.append(f"while {', '.join(s.name for s in beside)} ran")
        _done(console, built[0], started)
    failed = [t.name for t in timed if t.code]
    for number, step in enumerate(steps[len(beside) :], len(beside) + 1):
        if failed and not keep_going:
            break
        timed.append(_step(step, number, len(steps), console, started))
        if timed[-1].code:
            failed.append(step.name)
    total = time.perf_counter() - started
    _write(timed, total, whole, failed)
    summary.main()
    if failed:
        console.print(f"[bold red]make bench FAILED: {', '.join(failed)}[/] (logs in {LOGS})")
        raise typer.Exit(1)


def _step(step: Step, number: int, steps: int, console: Console, started: float) -> Timed:
    console.rule(f"[bold][{number}/{steps}] {step.name}[/]: {step.script} "
                 f"{' '.join(step.args)}")  # fmt: skip
    result = run(step.name, step.command(), console, LOGS / f"{step.name}.log")
    _done(console, result, started)
    return result


def _done(console: Console, step: Timed, started: float) -> None:
    verdict = "[green]done[/]" if step.code == 0 else f"[bold red]FAILED (exit {step.code})[/]"
    console.print(f"{step.name}: {verdict} in {step.wall:.1f} s (CPU {step.cpu:.1f} s); "
                  f"{(time.perf_counter() - started) / 60:.1f} min so far")  # fmt: skip


def _write(timed: list[Timed], total: float, whole: bool, failed: list[str]) -> None:
    figures = Figures("suite", "make bench: the suite itself")
    for step in timed:
        verdict = "" if step.code == 0 else f"FAILED (exit {step.code}); "
        figures.add(f"step {step.name}", step.wall, "s",
                    note=f"{verdict}CPU {step.cpu:.1f} s{'; ' if step.notes else ''}"
                    f"{'; '.join(step.notes)}")  # fmt: skip
    minutes = total / 60
    if whole:
        target = at_most(minutes, TARGET_MINUTES) if not failed else ("<= 15", False)
        figures.add("make bench, the whole set", minutes, "min", target,
                    note=f"{len(timed)} steps, inputs included" +
                    (f"; FAILED: {', '.join(failed)}" if failed else ""))  # fmt: skip
    else:
        figures.add("the steps run (--only)", minutes, "min",
                    note="not the whole set: no target")  # fmt: skip
    figures.write()


if __name__ == "__main__":
    app()
