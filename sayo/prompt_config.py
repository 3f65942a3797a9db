"""The recipe's `prompt:` section: what the model is told besides the question (`sayo.prompts` builds it).

Its own light module, so reading a recipe (`sayo recipes`, `sayo --help`) loads no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from sayo.config import check

INSTRUCTION = (
    "Think briefly inside <think></think>, then give only the final answer inside <answer></answer>."
)


@dataclass
class PromptConfig:
    """What the model is told besides the question (docs/method.md)."""

    system: str | None = None  # the system turn; null = none given (the chat template's own default)
    instruction: str = INSTRUCTION  # appended on its own line to the user's question; "" = the bare question

    def __post_init__(self) -> None:
        check(
            self.system is None or bool(self.system.strip()),
            "prompt.system",
            self.system,
            "must not be blank",
        )
