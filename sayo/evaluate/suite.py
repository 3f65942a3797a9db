"""The paper's evaluation suite as data: each set's expected place, layout, prompt and metric.

Why a built-in list (`evaluate.suite: sayo_paper`): the paper reports fourteen public sets, each
asked with its authors' prompt (`sayo.evaluate.presets`) and scored by its own metric
(`sayo.evaluate.scorers`); writing those fourteen entries by hand in every recipe invites a wrong
split or metric. Each set is expected as a Hugging Face dataset saved under `evaluate.suite_root`
(`<root>/<directory>`); `where_to_get` says how to put it there. Nothing is downloaded at run time.
A set whose files are missing stops the stage with that message, unless `evaluate.allow_missing`
(`--allow-missing`) is set: then it is skipped and the report marks it "not run".

`judge`: the official scorer of some sets is an LLM judge; those are scored with the rule-based
fallback named in `metric`, and the report says so (docs/evaluation.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SuiteSet:
    """One set of a suite."""

    name: str  # the name in metrics.json and the report
    preset: str  # layout and prompt (`sayo.evaluate.presets.PRESETS`)
    directory: str  # where it is expected, relative to `evaluate.suite_root`
    hub: str  # the Hugging Face dataset the authors evaluate (`datasets` id)
    metric: str  # how it is scored (`evaluate.benchmarks[].metric`)
    judge: str = ""  # the official LLM-judge scoring, when the metric is its rule-based fallback
    config: str = ""  # the dataset's configuration name, when it has several
    file: str = ""  # a data file inside `directory` to read instead of the whole directory
    images: str = ""  # where the file's relative image paths point, inside `directory`
    note: str = ""  # how to lay the set out, when a download alone does not do it

    def where_to_get(self, root: str) -> str:
        """The command that puts the set where the suite expects it (run once, with network)."""
        target = Path(root) / self.directory
        command = f"hf download {self.hub} --repo-type dataset --local-dir {target}"
        return f"{command}; {self.note}" if self.note else command


_JUDGE = "an LLM judge (GPT-4o)"
SAYO_PAPER: tuple[SuiteSet, ...] = (
    SuiteSet("ChartQA", "chartqa", "ChartQA", "lmms-lab/ChartQA", "chartqa_relaxed"),
    SuiteSet("MMStar", "mmstar", "MMStar", "Lin-Chen/MMStar", "mc_vlmeval"),
    SuiteSet("AI2D", "ai2d", "ai2d", "lmms-lab/ai2d", "mc_vlmeval"),
    SuiteSet("VStarBench", "vstar", "vstar_bench", "craigwu/vstar_bench", "mc_vlmeval"),
    SuiteSet("CharXiv_reasoning", "charxiv", "CharXiv", "princeton-nlp/CharXiv", "math_equal", judge=_JUDGE),
    SuiteSet("MME-RealWorld-Lite", "mme_realworld_lite", "MME-RealWorld-Lite",
             "yifanzhang114/MME-RealWorld-Lite", "mc_mme_realworld", file="data/MME-RealWorld-Lite.json",
             images="data/imgs", note="the authors' layout: data/MME-RealWorld-Lite.json, images unpacked "
             "under data/imgs"),
    SuiteSet("WeMath", "wemath", "We-Math", "We-Math/We-Math", "wemath"),
    SuiteSet("MathVista", "mathvista", "MathVista", "AI4Math/MathVista", "mathvista",
             judge="GPT-4 answer extraction (the rule-based steps are kept)"),
    SuiteSet("MathVerse", "mathverse", "MathVerse", "AI4Math/MathVerse", "math_equal",
             judge="GPT-4 answer extraction and GPT-4 scoring", config="testmini"),
    SuiteSet("MathVision", "mathvision", "MathVision", "MathLLMs/MathVision", "math_equal",
             judge="GPT-4 answer extraction"),
    SuiteSet("HallusionBench", "hallusionbench", "HallusionBench", "lmms-lab/HallusionBench", "hallusionbench"),
    SuiteSet("TableVQA_vwtq", "tablevqa_vwtq", "TableVQA-Bench", "terryoo/TableVQA-Bench", "wtq_denotation"),
    SuiteSet("RealWorldQA", "realworldqa", "RealWorldQA", "lmms-lab/RealWorldQA", "by_answer_type"),
    SuiteSet("M3CoT", "m3cot", "M3CoT", "LightChen2333/M3CoT", "mc_vlmeval"),
)  # fmt: skip
SUITES: dict[str, tuple[SuiteSet, ...]] = {"sayo_paper": SAYO_PAPER}


def suite_set(suite: str, name: str) -> SuiteSet | None:
    """The entry `name` of `suite`, or None (a benchmark that is not one of the suite's)."""
    return next((s for s in SUITES.get(suite, ()) if s.name == name), None)
