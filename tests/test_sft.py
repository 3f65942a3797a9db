"""SFT targets and the optional attention term (`sft.attention_loss`, docs/method.md "SFT warm-up")."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import assert_equivalent, build_tiny_dataset, tiny_policy, train_recipe

from sayo.data.dataset import GroundedDataset
from sayo.data.schema import Region, Sample
from sayo.data.synthetic import generate
from sayo.data.synthetic.search import direct_label
from sayo.prompts import formatted_answer
from sayo.recipe import load_recipe
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
    from sayo.attention_capture import AttentionCapture
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


def test_a_sample_carrying_its_reasoning_is_taught_it_whatever_its_task() -> None:
    # any source (here not the synthetic generator): what a sample teaches travels with it
    sample = Sample(
        id="user-1", image="images/x.png", question="What colour is below cyan?", answer="purple",
        regions=[Region(bbox=(0, 0, 10, 10), label="cyan tile")], source="jsonl",
        reasoning="green red, cyan purple", direct_reasoning="cyan purple",
    )  # fmt: skip
    assert sft_target(sample, True) == "<think> green red, cyan purple.</think><answer> purple</answer>"
    assert sft_target(sample, True, direct=True) == "<think> cyan purple.</think><answer> purple</answer>"
    assert sft_target(sample, False) == "<think></think><answer> purple</answer>"
    undirected = sample.model_copy(update={"direct_reasoning": None})  # direct: the reasoning itself
    assert sft_target(undirected, True, direct=True) == sft_target(sample, True)
    empty = sample.model_copy(update={"direct_reasoning": ""})  # a path that never names the target
    assert sft_target(empty, True, direct=True) == "<think></think><answer> purple</answer>"
    plain = sample.model_copy(update={"reasoning": None, "direct_reasoning": None})
    assert (
        sft_target(plain, True, direct=True)
        == "<think>I look at the cyan tile.</think><answer>purple</answer>"
    )


def _target_before(sample: Sample, reasoning: bool, direct: bool) -> str:
    """`sft_target` as it was while it knew the `search` task (and read its path off the region label)."""
    label = sample.regions[0].label if sample.regions else ""
    if sample.category == "search":
        if direct:
            label = direct_label(label, sample.question)
        return formatted_answer(f" {sample.answer}", f" {label}." if reasoning and label else "")
    return formatted_answer(sample.answer, f"I look at the {label}." if reasoning and label else "")


def _generated(recipe: str, *overrides: str) -> list[Sample]:
    return [sample for sample, _ in generate(load_recipe(recipe, list(overrides)).data.synthetic)]


@pytest.mark.parametrize("source", ["built", "miniature", "mixed"])
def test_targets_and_read_positions_are_those_of_the_search_aware_stage(search_dataset, source) -> None:
    if source == "built":  # by the `data` stage (the importer's workers)
        samples = GroundedDataset.load(search_dataset, None).samples
    elif source == "miniature":  # the miniature's data config (`generate_sample`)
        samples = _generated("miniature", "data.synthetic.num_samples=48")
    else:  # search among the other tasks
        samples = _generated(
            "tiny",
            "data.synthetic.num_samples=40",
            "data.synthetic.tasks={shapes: 1, bars: 1, choice: 1, search: 1}",
        )
    assert {s.category for s in samples} == (
        {"search"} if source != "mixed" else {"shapes", "bars", "choice", "search"}
    )
    _, processor = tiny_policy()
    for reasoning in (True, False):
        for direct in (True, False):
            new = [sft_target(s, reasoning, direct) for s in samples]
            old = [_target_before(s, reasoning, direct) for s in samples]
            assert new == old
            answers = [s.answer for s in samples]
            assert read_positions(processor.tokenizer, new, answers) == read_positions(
                processor.tokenizer, old, answers
            )
    if source == "miniature":  # the miniature's paths do leave detours out in the direct phase
        assert any(sft_target(s, True, True) != sft_target(s, True) for s in samples)


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

    # a misreading demonstration (it states the look-alike's colour) gets no attention term: its
    # target is taught as written, but where it looks is not pulled onto the region
    misread = [s.model_copy(update={"demonstrated_answer": "brown"}) if i in (1, 4) else s
               for i, s in enumerate(samples)]  # fmt: skip
    targets = [sft_target(s, True) for s in misread]
    assert targets[1].endswith("<answer> brown</answer>") and targets[0] == sft_target(samples[0], True)
    ids, mask = encode_completions(processor.tokenizer, targets)
    _, kept = answer_attention_share(model, processor, prompts, ids, mask, misread, images, targets, weighted)
    assert kept is not None and kept.shape == (4,)
    torch.testing.assert_close(kept.detach(), share.detach()[[0, 2, 3, 5]], rtol=1e-5, atol=1e-7)
    # taught its direct reasoning, a misreading sample states the right answer, and gets the term
    direct = [sft_target(s, True, direct=True) for s in misread]
    assert direct[1] == sft_target(samples[1], True, direct=True)
    ids, mask = encode_completions(processor.tokenizer, direct)
    _, every = answer_attention_share(
        model, processor, prompts, ids, mask, misread, images, direct, weighted, direct=True
    )
    assert every is not None and every.shape == (6,)


def test_attention_loss_must_not_be_negative(tmp_path, search_dataset) -> None:
    with pytest.raises(ValueError, match=r"sft\.attention_loss"):
        train_recipe(tmp_path, search_dataset, "sft.attention_loss=-1")
