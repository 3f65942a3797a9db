"""Does a checkpoint answer by looking? Three measurements that say which link of reading fails.

The region reward can only reinforce looking where looking pays: a policy that answers at chance
gives GRPO no correct answers to reinforce from where it looked (docs/results.md, "Reading this
run"). When it does not read, there are three places the chain can break, each measured here on
the same samples, each from one forward pass:

1. *the answer*: teacher-forced accuracy where the SFT response first has to state the answer
   (`sayo.train.sft.read_positions`: in the reasoning when a search path ends at the target, else
   after `<answer>`), given the prompt and the response before it (so a broken template does not
   count against it), next to the accuracy of always guessing the most common answer;
2. *the picture*: whether the region's visual tokens, as the language model receives them, carry
   the answer at all: the held-out accuracy of a linear probe (multinomial logistic regression)
   from their mean to the answer;
3. *where the answer step looks*: attention of the position that predicts that token on the
   region, as a share of its image attention (uniform: the region's fraction of image tokens) and
   of all its attention, over `rewards.attention`'s layers and heads.

The picture carries the answer and the answer step looks at the region, yet the answer stays at
chance: the read-out from the attended tokens is what is missing, not the features or where it
looks. That is what the miniature's tiny policy shows (docs/results.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from sayo.attention_capture import AttentionCapture
from sayo.data.schema import Sample
from sayo.prompts import build_prompt_batch, prompt_region_mask
from sayo.sampling import encode_completions
from sayo.scoring import completion_logits, score_on_regions
from sayo.train.config import TrainRecipe
from sayo.train.sft import read_positions, sft_target
from sayo.vision import SharedImages

READS = 0.05  # teacher-forced accuracy this far above guessing counts as reading


@dataclass(frozen=True)
class ReadingReport:
    """What `reading_check` measured on `samples` samples (fractions in [0, 1])."""

    samples: int
    accuracy: float  # teacher-forced accuracy of the answer's first token where it is first stated
    guess: float  # accuracy of always answering the most common answer of these samples
    probe: float  # held-out accuracy of the linear probe region features -> answer
    probe_guess: float  # the most common answer's share of the probe's held-out part
    share: float  # region share of the answer step's image attention
    uniform: float  # the region's fraction of image tokens (`share` under uniform attention)
    mass: float  # region share of all of the answer step's attention (text keys included)

    @property
    def reads(self) -> bool:
        """Whether the answers are above guessing by `READS`."""
        return self.accuracy >= self.guess + READS

    def as_dict(self) -> dict[str, float]:
        """Flat numbers for MLflow and JSON (`reading/<name>`)."""
        return {f"reading/{k}": float(v) for k, v in vars(self).items()}

    def line(self) -> str:
        """One sentence with every number."""
        return (
            f"teacher-forced answer accuracy {self.accuracy:.3f} (guessing the most common answer "
            f"{self.guess:.3f}); the region's visual tokens carry the answer: linear probe "
            f"{self.probe:.3f} held out (guessing {self.probe_guess:.3f}); the answer step puts "
            f"{self.share:.3f} of its image attention on the region (uniform {self.uniform:.3f}), "
            f"{self.mass:.3f} of all its attention ({self.samples} samples)"
        )

    def warning(self) -> str | None:
        """Which link fails when the policy does not read; None when it reads."""
        if self.reads:
            return None
        carried = self.probe >= self.probe_guess + READS
        looks = self.share >= 2 * self.uniform
        where = (
            "the read-out of the attended tokens is missing (the picture carries the answer and the "
            "answer step looks at the region)"
            if carried and looks
            else "the region's visual tokens do not carry the answer"
            if not carried
            else "the answer step does not look at the region"
        )
        return (
            f"the policy does not answer by looking (accuracy {self.accuracy:.3f} vs guessing "
            f"{self.guess:.3f}): {where}; the region reward has no correct answers to reinforce"
        )


def probe_accuracy(features: Tensor, labels: Sequence[str], steps: int = 300) -> tuple[float, float]:
    """(held-out accuracy, most-common-label share of the held-out part) of a multinomial logistic
    regression from `features` [N, D] to `labels`, fit on the first 3/4, tested on the rest.

    Features are standardised on the fit part; L2 1e-3; full-batch Adam, a fixed number of steps
    from zero weights, float64: deterministic.
    """
    classes = sorted(set(labels))
    y = torch.tensor([classes.index(label) for label in labels])
    x = features.detach().to(torch.float64)
    cut = (3 * len(y)) // 4
    if len(y) < 4:
        raise ValueError(f"{len(y)} samples are too few for a held-out probe (need >= 4)")
    mean, std = x[:cut].mean(0), x[:cut].std(0).clamp(min=1e-6)
    x = (x - mean) / std
    weight = torch.zeros(x.shape[1], len(classes), dtype=x.dtype, requires_grad=True)
    bias = torch.zeros(len(classes), dtype=x.dtype, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=0.05)
    with torch.enable_grad():
        for _ in range(steps):
            optimizer.zero_grad()
            logits = x[:cut] @ weight + bias
            loss = torch.nn.functional.cross_entropy(logits, y[:cut]) + 1e-3 * weight.pow(2).sum()
            loss.backward()
            optimizer.step()
    held = y[cut:]
    accuracy = float(((x[cut:] @ weight + bias).argmax(1) == held).double().mean())
    guess = Counter(held.tolist()).most_common(1)[0][1] / len(held)
    return accuracy, guess


@torch.no_grad()
def reading_check(
    model: Any,
    processor: Any,
    recipe: TrainRecipe,
    samples: Sequence[Sample],
    images: Sequence[Image.Image],
    batch_size: int = 16,
) -> ReadingReport | None:
    """The three measurements on the samples that have a region and an answer (None if < 4 do)."""
    kept = [
        (s, img) for s, img in zip(samples, images, strict=True)
        if s.regions and s.answer and s.demonstrated_answer is None  # not a misreading demonstration
    ]  # fmt: skip
    if len(kept) < 4:
        return None
    tokenizer = processor.tokenizer
    attention = recipe.rewards.attention
    capture = AttentionCapture(model, attention.layers, attention.heads)
    image_token_id = model.config.image_token_id
    hits, shares, masses, fractions, features, answers = [], [], [], [], [], []
    for begin in range(0, len(kept), batch_size):
        part = kept[begin : begin + batch_size]
        batch_samples, batch_images = [s for s, _ in part], [img for _, img in part]
        prompts = build_prompt_batch(processor, batch_samples, batch_images, prompt=recipe.prompt).to(
            model.device
        )
        targets = [sft_target(s, recipe.sft.reasoning) for s in batch_samples]
        ids, mask = encode_completions(tokenizer, targets)
        ids, mask = ids.to(model.device), mask.to(model.device)
        starts = read_positions(tokenizer, targets, [s.answer for s in batch_samples])
        rows = torch.tensor([i for i, at in enumerate(starts) if at is not None])
        at = torch.tensor([at for at in starts if at is not None])
        logits = completion_logits(model, prompts, ids, mask)  # [B, T, V]
        hits.append((logits[rows, at].argmax(-1) == ids[rows, at]).double().cpu())
        scores = score_on_regions(
            model, prompts, ids, mask, batch_samples, batch_images, capture, query="predicting"
        )
        assert scores.region is not None and scores.region_share is not None  # a capture was given
        shares.append(scores.region_share[rows, at].double().cpu())
        masses.append(scores.region.region[rows, at].double().cpu())
        fractions.append(scores.region.fraction[rows].double().cpu())
        # what the language model receives at the image tokens: the vision tower's output alone
        encoded = SharedImages.select(prompts, range(len(part))).encode(model)
        image, region = prompt_region_mask(prompts, batch_samples, batch_images, image_token_id)
        for i, tokens in enumerate(encoded):
            main = tokens[0] if tokens.dim() == 3 else tokens  # [tokens_i, D] (Qwen3-VL: before DeepStack)
            keys = region[i][image[i]].to(main.device)  # the region among this image's tokens
            features.append(main[keys].mean(0).double().cpu() if keys.any() else None)
        answers += [s.answer for s in batch_samples]
    labelled = [(f, a) for f, a in zip(features, answers, strict=True) if f is not None]
    probe, probe_guess = probe_accuracy(torch.stack([f for f, _ in labelled]), [a for _, a in labelled])
    return ReadingReport(
        samples=len(kept),
        accuracy=float(torch.cat(hits).mean()),
        guess=Counter(answers).most_common(1)[0][1] / len(answers),
        probe=probe,
        probe_guess=probe_guess,
        share=float(torch.cat(shares).mean()),
        uniform=float(torch.cat(fractions).mean()),
        mass=float(torch.cat(masses).mean()),
    )
