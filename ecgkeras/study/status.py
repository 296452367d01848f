"""Each run of a study: complete, running (its lock's owner), queued on SLURM, failed (with its
executed notebook or job log) or missing."""

from __future__ import annotations

from pathlib import Path

from ecgkeras.errors import EcgkerasError
from ecgkeras.runs.record import is_complete
from ecgkeras.study.layout import known_grid, run_folders, run_id
from ecgkeras.study.locks import lock_owner
from ecgkeras.study.notebooks import TRAIN_NOTEBOOK
from ecgkeras.study.slurm import queued_jobs, slurm_jobs


def status_lines(study_dir: Path) -> list[str]:
    """`ecgkeras status`: one line per run (id, state, detail), then the count of each state."""
    if not study_dir.is_dir():
        raise EcgkerasError(f"study folder not found: {study_dir}")
    rows = run_status(study_dir.resolve())
    if not rows:
        raise EcgkerasError(f"{study_dir} holds no run: start one with `ecgkeras study --out {study_dir}`")
    counts = {state: sum(row[1] == state for row in rows) for state in dict.fromkeys(row[1] for row in rows)}
    return ([f"{rid:<28} {state:<9} {detail}".rstrip() for rid, state, detail in rows]
            + [", ".join(f"{n} {state}" for state, n in counts.items())])


def run_status(study_dir: Path) -> list[tuple[str, str, str]]:
    """(run id, state, detail) for each run of the study: complete, running, queued, failed or missing."""
    executed = f"{TRAIN_NOTEBOOK}.ipynb"
    ids = known_grid(study_dir)
    ids += [rid for run_dir in run_folders(study_dir) if (run_dir / executed).is_file()
            and (rid := run_id(study_dir, run_dir)) not in ids]
    jobs = slurm_jobs(study_dir)
    queue_states = queued_jobs(job["job_id"] for job in jobs.values())
    rows = []
    for rid in ids:
        run_dir = study_dir / rid
        job = jobs.get(rid)
        if is_complete(run_dir):
            rows.append((rid, "complete", ""))
        elif owner := lock_owner(run_dir):
            rows.append((rid, "running", owner))
        elif job and queue_states.get(job["job_id"]) in {"PENDING", "CONFIGURING", "REQUEUED", "RUNNING"}:
            rows.append((rid, "queued", f"SLURM job {job['job_id']} {queue_states[job['job_id']].lower()}"))
        elif (run_dir / executed).is_file() or job:
            where = [str(run_dir / executed)] if (run_dir / executed).is_file() else []
            where += [job["log"]] if job else []
            rows.append((rid, "failed", "see " + " and ".join(where)))
        else:
            rows.append((rid, "missing", ""))
    return rows
