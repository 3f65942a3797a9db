"""SFT targets and the optional attention term (`sft.attention_loss`, docs/method.md "SFT warm-up")."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import assert_equivalent, build_tiny_dataset, tiny_policy, train_recipe

from sayo.data.dataset import GroundedDataset
from sayo.train.sft import answer_attention_share, answer_starts, read_positions, sft_loss, sft_target

SEARCH = [
    "data.synthetic.tasks={search: 1.0}",
    "data.synthetic.num_distractors=4",
    "data.synthetic.object_tokens=1",
]


@pytest.fixture(scope="module")
def search_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_dataset(tmp_path_factory.mktemp("search") / "processed", 24, *SEARCH)


@pytest.mark.parametrize(
    ("target", "first"),
    [
        ("<think> blue circle.</think><answer> triangle</answer>", " triangle"),
        ("<think></think><answer>red</answer>", "red"),
        ("<think>I look at the bar C.</think><answer>7</answer>", "7"),
    ],
)
def test_answer_starts_point_at_the_first_answer_token(target: str, first: str) -> None:
    _, processor = tiny_policy()
    tokenizer = processor.tokenizer
    (start,) = answer_starts(tokenizer, [target])
    ids = tokenizer(target, add_special_tokens=False)["input_ids"]
    assert start is not None
    assert tokenizer.decode(ids[start - 1 : start]) == "<answer>"
    assert first.startswith(tokenizer.decode(ids[start : start + 1]))
    assert answer_starts(tokenizer, ["no template"]) == [None]


@pytest.mark.parametrize(
    ("target", "answer", "before"),
    [
        # a search path that ends at the target: the last " purple" (a distractor's comes first)
        ("<think> cyan purple, brown purple.</think><answer> purple</answer>", "purple", " brown"),
        ("<think> green red.</think><answer> brown</answer>", "brown", "<answer>"),  # not stated before
        ("<think>I look at the red circle.</think><answer>circle</answer>", "circle", " red"),
        ("<think>I look at the bar C.</think><answer>7</answer>", "7", "<answer>"),
    ],
)
def test_read_positions_point_where_the_answer_is_first_stated(target: str, answer: str, before: str) -> None:
    _, processor = tiny_policy()
    tokenizer = processor.tokenizer
    (at,) = read_positions(tokenizer, [target], [answer])
    ids = tokenizer(target, add_special_tokens=False)["input_ids"]
    assert at is not None
    assert tokenizer.decode(ids[at - 1 : at]) == before
    assert answer.startswith(tokenizer.decode(ids[at : at + 1]).strip())
    assert read_positions(tokenizer, ["no template"], ["x"]) == [None]


@pytest.mark.parametrize("query", ["predicting", "own"])
def test_attention_term_reads_the_step_that_predicts_the_stated_answer(
    tmp_path, search_dataset, query
) -> None:
    from sayo.attention import AttentionCapture
    from sayo.prompts import build_prompt_batch
    from sayo.sampling import encode_completions
    from sayo.scoring import score_on_regions

    model, processor = tiny_policy()
    samples, images = GroundedDataset.load(search_dataset, "train").batch(list(range(4)))
    recipe = train_recipe(
        tmp_path, search_dataset, *SEARCH, "sft.attention_loss=1", f"rewards.attention.query={query}"
    )
    prompts = build_prompt_batch(processor, samples, images)
    targets = [sft_target(s, True) for s in samples]
    ids, mask = encode_completions(processor.tokenizer, targets)
    with torch.no_grad():
        _, share = answer_attention_share(
            model, processor, prompts, ids, mask, samples, images, targets, recipe
        )
        capture = AttentionCapture(model, "last_half", "mean")
        predicting = score_on_regions(model, prompts, ids, mask, samples, images, capture, query="predicting")
    at = read_positions(processor.tokenizer, targets, [s.answer for s in samples])
    assert predicting.region_share is not None and share is not None
    want = torch.stack([predicting.region_share[i, a] for i, a in enumerate(at)])  # the same query either way
    assert_equivalent(share, want, rel=1e-5, msg="answer share vs predicting query")  # float32 model


def test_search_target_reads_the_answer_in_the_answer_tag(search_dataset: Path) -> None:
    data = GroundedDataset.load(search_dataset, "train")
    for sample in data.samples:
        target = sft_target(sample, reasoning=True)
        thought = target.split("</think>")[0]
        assert target.endswith(f"<answer> {sample.answer}</answer>")
        # the reasoning names the visited distractors only: the answer is never written before looking
        colour = sample.question.removeprefix("What shape is ").removesuffix("?")
        assert f"{colour} {sample.answer}" not in thought


@pytest.mark.parametrize(
    ("label", "direct"),
    [
        ("green red, cyan purple", "<think> cyan purple.</think><answer> purple</answer>"),  # detour dropped
        ("cyan purple", "<think> cyan purple.</think><answer> purple</answer>"),  # already direct
        ("green red", "<think></think><answer> purple</answer>"),  # path without the target
        ("green purple", "<think></think><answer> purple</answer>"),  # even ending with the answer
    ],
)
def test_direct_targets_drop_the_detours(search_dataset: Path, label: str, direct: str) -> None:
    sample = GroundedDataset.load(search_dataset, "train").samples[0]
    sample = sample.model_copy(update={
        "answer": "purple", "question": "What colour is below cyan?",
        "regions": [sample.regions[0].model_copy(update={"label": label})],
    })  # fmt: skip
    assert sft_target(sample, True, direct=True) == direct
    assert sft_target(sample, True) == f"<think> {label}.</think><answer> purple</answer>"


def test_sft_schedule_goes_direct_then_adds_the_attention_term(tmp_path, search_dataset, monkeypatch) -> None:
    import sayo.train.sft as sft

    seen: list[tuple[bool, bool]] = []
    original = sft.sft_loss

    def recording(*args, **kwargs):
        seen.append((args[-2], args[-1]))  # (direct, attention)
        return original(*args, **kwargs)

    monkeypatch.setattr(sft, "sft_loss", recording)
    sft.train_sft(train_recipe(
        tmp_path, search_dataset, *SEARCH, "sft.max_steps=4", "sft.direct_steps=2", "sft.attention_start=3",
        "sft.attention_loss=1.0", "checkpoint.every=0", "sft.eval_every=0", "tracking.enabled=false",
    ))  # fmt: skip
    assert seen == [(True, False), (True, False), (False, True), (False, True)]
    for bad in ("sft.direct_steps=-1", "sft.attention_start=0"):
        with pytest.raises(ValueError, match=bad.split("=")[0].replace(".", r"\.")):
            train_recipe(tmp_path, search_dataset, bad)


def test_attention_term_is_off_before_attention_start(tmp_path, search_dataset) -> None:
    model, processor = tiny_policy()
    samples, images = GroundedDataset.load(search_dataset, "train").batch(list(range(4)))
    plain = train_recipe(tmp_path, search_dataset, *SEARCH)
    weighted = train_recipe(tmp_path, search_dataset, *SEARCH, "sft.attention_loss=1.0")
    nll, _ = sft_loss(model, processor, samples, images, plain, "cpu")
    off, _ = sft_loss(model, processor, samples, images, weighted, "cpu", attention=False)
    on, _ = sft_loss(model, processor, samples, images, weighted, "cpu", attention=True)
    torch.testing.assert_close(off, nll, rtol=1e-5, atol=0.0)
    assert float(on.detach()) > float(off.detach()) + 1e-3


def test_attention_term_is_minus_log_of_the_answer_tokens_region_share(tmp_path, search_dataset) -> None:
    model, processor = tiny_policy()
    data = GroundedDataset.load(search_dataset, "train")
    samples, images = data.batch(list(range(6)))
    plain = train_recipe(tmp_path, search_dataset, *SEARCH)
    weighted = train_recipe(tmp_path, search_dataset, *SEARCH, "sft.attention_loss=0.5")
    nll, tokens = sft_loss(model, processor, samples, images, plain, "cpu")
    total, same_tokens = sft_loss(model, processor, samples, images, weighted, "cpu")
    assert tokens == same_tokens

    from sayo.prompts import build_prompt_batch
    from sayo.sampling import encode_completions

    prompts = build_prompt_batch(processor, samples, images)
    targets = [sft_target(s, True) for s in samples]
    ids, mask = encode_completions(processor.tokenizer, targets)
    _, share = answer_attention_share(
        model, processor, prompts, ids, mask, samples, images, targets, weighted
    )
    assert share is not None and share.shape == (6,) and share.requires_grad
    assert ((share > 0) & (share < 1)).all()
    expected = nll + 0.5 * -torch.log(share).mean()
    torch.testing.assert_close(total, expected, rtol=1e-5, atol=0.0)

    # the term reaches the weights that decide where the answer token looks
    q_proj = model.model.language_model.layers[-1].self_attn.q_proj.weight
    (-torch.log(share).mean()).backward()
    assert q_proj.grad is not None and float(q_proj.grad.abs().max()) > 0
    model.zero_grad(set_to_none=True)


def test_attention_loss_must_not_be_negative(tmp_path, search_dataset) -> None:
    with pytest.raises(ValueError, match=r"sft\.attention_loss"):
        train_recipe(tmp_path, search_dataset, "sft.attention_loss=-1")
