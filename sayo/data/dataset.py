"""A split of a built dataset with its images, as the stages read it.

`sayo data build` writes the dataset directory (manifest, split files, content-addressed images);
training, evaluation and the probes read one split of it through `GroundedDataset`, images
loaded lazily and kept in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from sayo.data.layout import load_split
from sayo.data.schema import Sample


@dataclass
class GroundedDataset:
    """The samples of one split and their images (loaded lazily, kept in memory)."""

    root: Path
    samples: list[Sample]
    _images: dict[str, Image.Image] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, root: str | Path, split: str | None, max_samples: int | None = None) -> GroundedDataset:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(
                f"dataset directory {root} does not exist (build it with `sayo data build`)"
            )
        samples = load_split(root, split)
        if not samples:
            raise ValueError(f"{root}: split {split!r} has no samples")
        return cls(root, samples[:max_samples] if max_samples else samples)

    def __len__(self) -> int:
        return len(self.samples)

    def image(self, sample: Sample) -> Image.Image:
        """The sample's image as RGB (path relative to the dataset root)."""
        if sample.image not in self._images:
            path = self.root / sample.image
            try:
                with Image.open(path) as img:
                    self._images[sample.image] = img.convert("RGB")
            except OSError as err:
                raise OSError(f"{path}: cannot read the image of sample {sample.id!r}: {err}") from err
        return self._images[sample.image]

    def batch(self, indices: list[int]) -> tuple[list[Sample], list[Image.Image]]:
        samples = [self.samples[i] for i in indices]
        return samples, [self.image(s) for s in samples]
