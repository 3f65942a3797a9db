"""Importers: one small module per input format, each yielding `Candidate`s or `Problem`s.

Why this shape: an importer only *reads* its format (file, line, field positions included) and
never decides what is valid; `sayo.data.validate.check_candidate` applies the same checks to every
source, so a box outside the image reads the same whether it came from COCO, a TSV or our JSONL.
Format-level faults (a line that is not JSON, undecodable base64, a missing image file) are
reported by the importer itself, with the position it knows best.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from sayo.data.config import DataConfig, SourceConfig
from sayo.data.importers.coco import import_coco, import_refcoco
from sayo.data.importers.gqa import import_gqa
from sayo.data.importers.hf import import_hf
from sayo.data.importers.jsonl import import_jsonl
from sayo.data.importers.paper import import_paper_parquet, import_refocus
from sayo.data.importers.synthetic import import_synthetic
from sayo.data.importers.tsv import import_tsv
from sayo.data.validate import Candidate, Dropped, Problem

Importer = Callable[[SourceConfig, DataConfig], Iterator[Candidate | Problem | Dropped]]
IMPORTERS: dict[str, Importer] = {
    "jsonl": import_jsonl,
    "coco": import_coco,
    "refcoco": import_refcoco,
    "tsv": import_tsv,
    "synthetic": import_synthetic,
    "hf": import_hf,
    "gqa": import_gqa,
    "refocus": import_refocus,
    "paper_parquet": import_paper_parquet,
}


def import_source(source: SourceConfig, config: DataConfig) -> Iterator[Candidate | Problem | Dropped]:
    """Every candidate sample (or problem) of one configured source, in file order."""
    return IMPORTERS[source.type](source, config)


__all__ = ["IMPORTERS", "Importer", "import_source"]
