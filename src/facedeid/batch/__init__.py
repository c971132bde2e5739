"""Batch de-identification at scale: resumable runs over folders and manifests, on a local process
pool or a Ray cluster, with a SQLite job ledger in the output folder.

``run_batch`` is what ``facedeid batch`` calls; every item goes through
:func:`facedeid.pipeline.anonymize_file`, the same path as ``facedeid anonymize``.
"""
from .engines import ENGINES
from .ledger import Ledger
from .manifest import Item, iter_items
from .outdir import LEDGER_NAME, SUMMARY_NAME
from .runner import BatchSummary, RunStats, run_batch

__all__ = ["ENGINES", "LEDGER_NAME", "SUMMARY_NAME", "BatchSummary", "Item", "Ledger", "RunStats", "iter_items", "run_batch"]
