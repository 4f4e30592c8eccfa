"""Stopping a benchmark's worker group."""

from tests.kafka.group_support import Group


def stop_together(group: Group) -> None:
    """Every running worker asked to stop at once (a paused one woken first), then each waited
    for: a worker takes a few seconds to shut down, so one after the other adds them up."""
    for name, worker in group.workers.items():
        if worker.alive() and worker.process is not None:
            group.resume(name)
            worker.process.terminate()
    group.stop_all()
