"""The `data` component: sources → a versioned `Dataset` artifact (`sayo.data.build`)."""

from kfp import dsl
from kfp.dsl import Dataset, Markdown, Metrics, Output

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def data(
    config: str,
    overrides: list[str],
    sources: list[dict],
    dataset: Output[Dataset],
    stats: Output[Metrics],
    card: Output[Markdown],
):
    """Build the dataset of `config` (+ overrides, + `sources` when non-empty) into `dataset`."""
    from pathlib import Path

    from sayo.pipeline.steps import numeric_metrics, run_data

    result = run_data(config, list(overrides), list(sources), dataset.path)
    for key, value in numeric_metrics(result).items():
        stats.log_metric(key, value)
    dataset.metadata["num_samples"] = int(result.get("num_samples", 0))
    Path(card.path).write_text((Path(dataset.path) / "dataset_card.md").read_text())
