"""One start of ``okr-ledger worker``: the CPU of each of its processes and the time until ready.

Starts Tansu (or uses ``--kafka host:port``), then, per round, fresh topics and one worker as the
Kafka tests start it (:class:`tests.kafka.worker_support.Worker`: the same settings, the same
command), timed until its log says it is sequencing the intake partitions (what the tests wait
for). At that moment the CPU (user + system) of each of its processes is read from /proc: the
worker's main process, the sequencer process (spawned), multiprocessing's resource tracker
(when one runs) and the processes it already reaped. Then it is stopped (SIGTERM) and the CPU
of its whole life (both processes, the stop included; and its system part) is taken from this
process's reaped children (``RUSAGE_CHILDREN``).

The raw anchor of the same run: ``python -c "import faust, aiokafka"`` (the interpreter and the
two libraries alone), its CPU and wall time, once per round. Prints the median of each figure
over the rounds; figures go to benchmarks/.work/figures/worker_start.json
(``benchmarks/summary.py``).

``--repo DIR`` runs another checkout's worker (``DIR/.venv/bin/python``, in ``DIR``): the
before/after of a change in one session, alternated.

Usage: python benchmarks/worker_start.py [--rounds 5] [--kafka host:port] [--repo DIR]
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.figures import CLOCK_TICKS, Figures, cpu_seconds
from events.kafka_admin import ensure_topics, okr_topics
from events.kafka_client import Connection
from tests.kafka.broker import broker_address
from tests.kafka.conftest import TEST_PARTITIONS
from tests.kafka.worker_support import Worker, descendants

WORKER = "from okr_ledger.worker_cli import worker; worker()"
ANCHOR = "import faust, aiokafka"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def children_system_cpu() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime


def reaped_cpu(pid: int) -> float:
    """CPU of the children ``pid`` has waited for (cutime + cstime)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[13]) + int(fields[14])) / CLOCK_TICKS


def role(pid: int) -> str:
    """The worker's sequencer process (spawned, or forked: then its command line is the
    worker's), or multiprocessing's resource tracker (which a spawn starts)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "gone"
    return "resource tracker" if "resource_tracker" in command else "sequencer"


def one_start(kafka: Connection, work: Path, python: str, repo: Path | None) -> dict[str, float]:
    """One worker's start on fresh topics: seconds to ready, CPU per process, CPU of its life."""
    suffix = uuid.uuid4().hex[:12]
    topics = {r: f"bench.{suffix}.{r}" for r in ("intake", "ledger", "rejections", "outcomes")}
    ensure_topics(kafka, okr_topics(**topics, partitions=TEST_PARTITIONS))
    worker = Worker(kafka, topics, work / suffix / "worker.log")
    worker.log_path.parent.mkdir(parents=True)
    before, system_before = children_cpu(), children_system_cpu()
    began = time.monotonic()
    with worker.log_path.open("ab") as log:
        worker.process = subprocess.Popen(
            [python, "-c", WORKER],
            env=worker.env,
            cwd=repo,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        worker.wait_ready(1)
        found: dict[str, float] = {"ready s": time.monotonic() - began}
        pid = worker.process.pid
        found["worker CPU s"] = cpu_seconds(pid) or 0.0
        found["reaped CPU s"] = reaped_cpu(pid)
        for child in descendants(pid):
            name = role(child) + " CPU s"
            found[name] = found.get(name, 0.0) + (cpu_seconds(child) or 0.0)
    finally:
        worker.stop()
    found["at ready, all CPU s"] = sum(v for k, v in found.items() if k.endswith(" CPU s"))
    found["whole life CPU s"] = children_cpu() - before
    found["whole life, system CPU s"] = children_system_cpu() - system_before
    return found


def anchor(python: str) -> tuple[float, float]:
    """CPU and wall seconds of ``python -c "import faust, aiokafka"``."""
    before, began = children_cpu(), time.monotonic()
    subprocess.run([python, "-c", ANCHOR], check=True)
    return children_cpu() - before, time.monotonic() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kafka", help="host:port of a running broker (else Tansu is started)")
    parser.add_argument("--repo", type=Path, help="the checkout whose worker runs (its .venv)")
    args = parser.parse_args()
    repo = args.repo.resolve() if args.repo else None
    python = str(repo / ".venv" / "bin" / "python") if repo else sys.executable
    figures = Figures("worker_start", "one start of okr-ledger worker: CPU and time to ready")
    print(f"load {os.getloadavg()}; worker from {repo or 'this checkout'}", flush=True)
    rounds: list[dict[str, float]] = []
    anchors: list[tuple[float, float]] = []
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="okr-start-")))
        address = broker_address(args.kafka, work, stack)
        kafka = Connection((address,), "okr-bench", timeout_s=15.0)
        for number in range(args.rounds):
            anchors.append(anchor(python))
            rounds.append(one_start(kafka, work, python, repo))
            shown = ", ".join(f"{k} {v:.2f}" for k, v in rounds[-1].items())
            print(f"  round {number + 1}: {shown}", flush=True)
    anchor_cpu = statistics.median(a[0] for a in anchors)
    anchor_wall = statistics.median(a[1] for a in anchors)
    raw = f'python -c "{ANCHOR}": {anchor_cpu:.2f} CPU s, {anchor_wall:.2f} s'
    names = list(dict.fromkeys(name for found in rounds for name in found))
    for name in names:
        values = [found.get(name, 0.0) for found in rounds]
        unit = "s" if name == "ready s" else "CPU s"
        figures.add(
            f"worker start: {name.removesuffix(' s')}",
            statistics.median(values),
            unit,
            anchor=raw,
            note=f"median of {len(values)}; load {os.getloadavg()[0]:.2f}",
        )
    print(f"  figures: {figures.write()}")


if __name__ == "__main__":
    main()
