"""Studies: many training runs compared through the same recipe and evaluation, one process per variant.

The outermost layer: it runs the recipe's commands in child processes and reads what they leave, and nothing in
the package imports it. ``runner`` runs declarative variants resumably; ``results`` keeps their rows (a metrics
dict each) in a CSV across reruns and writes the tables, the plot and the doc whose hand-written reading stays.
The studies themselves (their variants and their doc's words) are scripts: ``scripts/retention_study.py``,
``scripts/benchmark.py``.
"""

from __future__ import annotations

from ..common import lazy_exports

_EXPORTS = {  # submodule: the public names it defines
    "runner": ("Variant", "Runner", "ProcessRecord", "run_process", "read_record", "select"),
    "results": ("Row", "Column", "Panel", "read_csv", "write_csv", "collect_rows", "markdown_table", "write_doc",
                "write_scatter", "measured_on", "fmt", "READING_START", "READING_END"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
