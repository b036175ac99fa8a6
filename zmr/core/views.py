"""What the scheduler reports: job and worker status built from its state, never stored beside it."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import msgspec

from zmr.core.durable import Ledger
from zmr.core.state import Job, WorkerEntry, job_id_of
from zmr.core.stepgraph import StepNode, plan_waves
from zmr.protocol import messages as m

STATUS_JSON_VERSION = 1
"""The version of `status_document`'s format: it changes when a field is renamed or removed, not when
one is added."""


def status_document(reply: m.StatusReply) -> dict[str, Any]:
    """The status reply as one JSON-ready document with named fields: `{"version": 1, "now": ...,
    "jobs": [...], "workers": [...]}`, each job and worker with the fields of `JobInfo` and `WorkerInfo`.
    `zmr status --json` prints it; the dashboard's `/api/status` and `/api/jobs/<id>` serve it."""
    return {"version": STATUS_JSON_VERSION, "now": reply.now, "jobs": named(reply.jobs),
            "workers": named(reply.workers)}


def named(value: Any) -> Any:
    """Records as objects with named fields (on the wire they are arrays), all the way down."""
    if isinstance(value, msgspec.Struct):
        return {name: named(getattr(value, name)) for name in value.__struct_fields__}
    if isinstance(value, list | tuple):
        return [named(item) for item in value]
    return value


def task_counts(book: Ledger) -> Counter[tuple[str, str]]:
    """(kind, state) -> tasks of the jobs not ended yet; O(their tasks), so asked for at a bounded rate."""
    counts: Counter[tuple[str, str]] = Counter()
    for job in book.jobs.values():
        if not job.state.ended:
            counts.update((t.kind, t.state.value) for t in itertools.chain(job.maps, job.reduces))
    return counts


def status(book: Ledger, job_id: str | None, now: float, tasks: bool = False) -> m.StatusReply | m.ErrorReply:
    """Every job in brief with the workers; or one job, with its tables and timeline if `tasks`."""
    if job_id is None:   # a multi-step job is listed once, as its head
        jobs = [brief(info) for info in book.archived.values() if not info.head]
        jobs += [job_info(job, book, detail=False) for job in book.jobs.values() if not _a_step_of_another(job)]
        return m.StatusReply(now=now, jobs=jobs, workers=[worker_info(w) for w in book.workers.values()])
    if job_id in book.archived:
        info = book.archived[job_id]
        return m.StatusReply(now=now, jobs=[info if tasks else brief(info)], workers=[])
    if job_id in book.jobs:
        return m.StatusReply(now=now, jobs=[job_info(book.jobs[job_id], book, detail=tasks)], workers=[])
    return m.ErrorReply(message=f"no job {job_id}")


def wait_reply(book: Ledger, job_id: str, now: float) -> m.StatusReply | m.ErrorReply:
    """The answer to a held WaitJob: the job's brief status."""
    job = book.jobs.get(job_id)
    if job is not None:
        return m.StatusReply(now=now, jobs=[job_info(job, book, detail=False)], workers=[])
    if job_id in book.archived:
        return m.StatusReply(now=now, jobs=[brief(book.archived[job_id])], workers=[])
    return m.ErrorReply(message=f"no job {job_id}")


def brief(info: m.JobInfo) -> m.JobInfo:
    return msgspec.structs.replace(info, tasks=[], partitions=[], timeline=[], attempts=[])


def _a_step_of_another(job: Job) -> bool:
    return job.spec.is_step and job.spec.head != job.id


def step_infos(head: Job, book: Ledger) -> list[m.StepInfo]:
    """A multi-step job's steps, in graph order, each with its wave (see zmr.core.stepgraph)."""
    steps = head.spec.steps
    waves = plan_waves(head.spec.app_name, [StepNode(s.name, tuple(s.inputs), s.has_map, s.has_reduce, s.n_reduce)
                                            for s in steps])
    wave_of = {name: w for w, names in enumerate(waves) for name in names}
    out = []
    for k, step in enumerate(steps):
        job = book.jobs.get(job_id_of(head.number + (k + 1) % len(steps)))
        if job is None or job.spec.head != head.id:
            continue
        out.append(m.StepInfo(name=step.name, job_id=job.id, wave=wave_of[step.name], state=job.state.value,
                              maps_done=job.maps_done, maps_total=len(job.maps), reduces_done=job.reduces_done,
                              reduces_total=len(job.reduces), bytes_shuffled=job.bytes_shuffled,
                              leases=job_leases(job, book)))
    return out


def job_info(job: Job, book: Ledger, detail: bool) -> m.JobInfo:
    tasks = [m.TaskInfo(kind=t.kind, index=t.index, state=t.state.value, attempts=t.attempts_made,
                        worker=t.committed_worker or next((a.worker for a in t.running.values()), ""),
                        started=t.started, finished=t.finished)
             for t in itertools.chain(job.maps, job.reduces)] if detail else []
    parts = [m.PartitionInfo(partition=p, owner=job.owners[p] if job.owners else "",
                             bytes_in=s.bytes_in, batches_in=s.batches_in, first_batch=s.first_batch,
                             last_batch=s.last_batch)
             for p, s in sorted(job.partition_stats.items())] if detail else []
    info = m.JobInfo(job_id=job.id, app_name=job.spec.app_name, state=job.state.value,
                     submitted=job.submitted, started=job.started, finished=job.finished,
                     maps_done=job.maps_done, maps_total=len(job.maps), reduces_done=job.reduces_done,
                     reduces_total=len(job.reduces), bytes_shuffled=job.bytes_shuffled,
                     records_out=job.records_out, output_dir=job.spec.output_dir, error=job.error,
                     tasks=tasks, partitions=parts, leases=job_leases(job, book),
                     timeline=list(job.timeline) if detail else [], output_format=job.spec.output_format,
                     compressed_inputs=job.compressed_inputs,
                     attempts=list(job.attempt_log.spans) if detail else [],
                     attempts_dropped=job.attempt_log.dropped, head=job.spec.head if _a_step_of_another(job) else "")
    if job.spec.steps and job.spec.head == job.id:
        info = msgspec.structs.replace(info, steps=step_infos(job, book))
    return info


def job_leases(job: Job, book: Ledger) -> int:
    """Leased resources the job's live workers last reported holding."""
    return sum(w.leases.get(job.id, 0) for w in book.workers.values() if w.alive)


def worker_info(worker: WorkerEntry) -> m.WorkerInfo:
    current = worker.current
    return m.WorkerInfo(worker_id=worker.id, data_addr=worker.data_addr, state=worker_state(worker),
                        last_heartbeat=worker.last_seen,
                        task=f"{current.job_id}/{current.kind}-{current.task}" if current else "",
                        leases=sum(worker.leases.values()) if worker.alive else 0, rss=worker.rss,
                        bytes_in=worker.bytes_in, bytes_out=worker.bytes_out)


def worker_state(worker: WorkerEntry) -> str:
    if worker.unreachable:
        return "unreachable"   # refused: its peers could not have reached its data address
    if not worker.alive:
        return "dead"
    if not worker.peer:
        return "awaited"   # named in the journal, not back since the coordinator restarted
    return "busy" if worker.current else "idle"
