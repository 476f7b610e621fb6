"""Placing a set job's sets under results/sets/: a set job draws several sources' sets into a folder of its own
(`sets.sources_per_job`), and each source's sets are linked from there to results/sets/<set id>/, where the
rules that read sets find them. Standard library only: the job that links a source's sets imports no model
library."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from preimage.engine.set_files import SUMMARY_FILE


def link_sets(job_dir: str | os.PathLike, summaries: Sequence[str | os.PathLike]) -> list[Path]:
    """Place the sets whose summaries are `summaries` (results/sets/<set id>/summary.parquet) from the set folders
    of `job_dir`: every file hard-linked (a copy where the file system has no hard links), replacing what those
    folders held; a set's summary, which marks it complete, is placed last. The placed files are dated now, so that
    Snakemake finds them newer than the job's folder. Returns the placed set folders."""
    job_dir = Path(job_dir)
    targets = [Path(summary).parent for summary in summaries]
    missing = [target.name for target in targets if not (job_dir / target.name / SUMMARY_FILE).is_file()]
    if missing:
        raise FileNotFoundError(f"{job_dir}: the set job wrote no complete set {missing[0]!r} "
                                f"({len(missing)} of {len(targets)} missing)")
    for target in targets:
        source = job_dir / target.name
        shutil.rmtree(target, ignore_errors=True)
        files = [path for path in source.rglob("*") if path.is_file()]
        for path in sorted(files, key=lambda path: path.name == SUMMARY_FILE):  # the summary last
            _place(path, target / path.relative_to(source))
    return targets


def _place(source: Path, target: Path) -> None:
    """`source` at `target` as a hard link (a copy across file systems or where links are refused), dated now."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    os.utime(target)
