"""Region-grounded datasets: the sample schema and the generators/importers that produce it."""

from sayo.data.schema import AnswerType, Region, Sample

__all__ = ["AnswerType", "Region", "Sample"]
