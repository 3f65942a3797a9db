"""The torchrun command line of a multi-GPU / multi-node stage."""

from __future__ import annotations

import pytest

from sayo.train.launch import launch_command


def test_single_node_defaults() -> None:
    argv = launch_command("grpo", "qwen2_5_vl_7b", [], nproc_per_node=8)
    assert argv == [
        "torchrun",
        "--nnodes=1",
        "--nproc-per-node=8",
        "--node-rank=0",
        "--master-addr=127.0.0.1",
        "--master-port=29500",
        "-m",
        "sayo",
        "grpo",
        "--config",
        "qwen2_5_vl_7b",
    ]


def test_multi_node_with_overrides_in_order() -> None:
    overrides = ["deepspeed.config=zero3", "grpo.max_steps=200", "model.lora.r=8"]
    argv = launch_command(
        "sft",
        "c.yaml",
        overrides,
        nproc_per_node=4,
        nnodes=2,
        node_rank=1,
        master_addr="10.0.0.5",
        master_port=23456,
    )
    launcher, entry = argv[: argv.index("-m")], argv[argv.index("-m") :]
    assert launcher == [
        "torchrun",
        "--nnodes=2",
        "--nproc-per-node=4",
        "--node-rank=1",
        "--master-addr=10.0.0.5",
        "--master-port=23456",
    ]
    assert entry == ["-m", "sayo", "sft", "--config", "c.yaml", *overrides]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stage": "evaluate"}, "stage = 'evaluate'"),  # only training stages are launched this way
        ({"nproc_per_node": 0}, "nproc_per_node >= 1"),  # no process
        ({"nnodes": 2, "node_rank": 2}, r"node_rank = 2 .*\[0, 2\)"),  # rank past the last node
        ({"master_port": 70000}, "master_port = 70000"),  # not a TCP port
        ({"overrides": ["grpo.max_steps"]}, r"\['grpo.max_steps'\] .*key=value"),  # missing =value
    ],
)
def test_invalid_arguments(kwargs: dict, match: str) -> None:
    args = {"stage": "grpo", "config_path": "c.yaml", "overrides": [], "nproc_per_node": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        launch_command(**args)
