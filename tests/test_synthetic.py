"""Tests of the synthetic region-grounded data: determinism, geometry, answers, dataset I/O."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from sayo.data.manifest import load_manifest
from sayo.data.schema import AnswerType
from sayo.data.synthetic import (
    SyntheticConfig,
    encode_png,
    generate,
    generate_sample,
    task_schedule,
    write_dataset,
)
from sayo.data.synthetic import dataset as dataset_module
from sayo.data.synthetic.bars import BAR_COLOUR, GRID_COLOUR
from sayo.data.synthetic.canvas import PALETTE
from sayo.data.synthetic.search import SEARCH_PALETTE, direct_label
from sayo.data.synthetic.shapes import KINDS, scene_attributes

ALL_TASKS = {"shapes": 1.0, "bars": 1.0, "choice": 1.0}


def _pixels(image: Image.Image, bbox: tuple[float, ...]) -> np.ndarray:
    x1, y1, x2, y2 = (int(v) for v in bbox)
    return np.asarray(image, dtype=np.int64)[y1:y2, x1:x2]  # [h, w, 3]


def _dominant_palette_colour(pixels: np.ndarray) -> tuple[str, float]:
    """Nearest of palette ∪ {black, white, grey} per pixel; the most common palette colour and its share."""
    names = [*PALETTE, "black", "white", "grey"]
    refs = np.array([*PALETTE.values(), (0, 0, 0), (255, 255, 255), (230, 230, 230)])  # [K, 3]
    nearest = np.argmin(((pixels[..., None, :] - refs) ** 2).sum(-1), axis=-1)  # [h, w]
    counts = Counter(names[k] for k in nearest.ravel() if names[k] in PALETTE)
    name, count = counts.most_common(1)[0]
    return name, count / nearest.size


# --- config -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"num_samples": 0}, "num_samples"),  # nothing to generate
        ({"num_samples": True}, "num_samples"),  # bools are not counts
        ({"image_size": (16, 224)}, "image_size"),  # side below the minimum
        ({"image_size": (224,)}, "image_size"),  # not a pair
        ({"image_size": (224.0, 224)}, "image_size"),  # sides must be integers
        ({"num_distractors": -1}, "num_distractors"),
        ({"num_distractors": 9}, "num_distractors"),  # above the maximum
        ({"difficulty": "extreme"}, "difficulty"),
        ({"tasks": {"lines": 1.0}}, "tasks"),  # unknown task
        ({"tasks": {"shapes": -1.0}}, "tasks"),  # negative weight
        ({"tasks": {"shapes": 0.0}}, "tasks"),  # all weights zero
        ({"tasks": {"shapes": float("nan")}}, "tasks"),
        ({"seed": -1}, "seed"),
    ],
)
def test_config_errors_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=rf"SyntheticConfig\.{field} "):
        SyntheticConfig(**kwargs)  # type: ignore[arg-type]


def test_config_accepts_yaml_style_lists() -> None:
    assert SyntheticConfig(image_size=[320, 96]).image_size == (320, 96)  # type: ignore[arg-type]


def test_unknown_task_is_rejected() -> None:
    with pytest.raises(ValueError, match="lines"):
        generate_sample("lines", 0, SyntheticConfig())


def test_schedule_follows_weights() -> None:
    config = SyntheticConfig(num_samples=7, tasks={"shapes": 1.0, "bars": 0.5, "choice": 0.25})
    assert Counter(task_schedule(config)) == {"shapes": 4, "bars": 2, "choice": 1}
    only_bars = SyntheticConfig(num_samples=5, tasks={"shapes": 0.0, "bars": 1.0})
    assert set(task_schedule(only_bars)) == {"bars"}


# --- determinism and identity -------------------------------------------------------------


def _dump(config: SyntheticConfig) -> list[tuple[str, bytes]]:
    return [(sample.model_dump_json(), encode_png(image)) for sample, image in generate(config)]


def test_same_seed_gives_identical_bytes_and_samples() -> None:
    config = SyntheticConfig(num_samples=12, tasks=ALL_TASKS, difficulty="hard", seed=3)
    assert _dump(config) == _dump(SyntheticConfig(**vars(config)))


def test_different_seed_gives_different_data() -> None:
    first = _dump(SyntheticConfig(num_samples=6, tasks=ALL_TASKS, seed=0))
    second = _dump(SyntheticConfig(num_samples=6, tasks=ALL_TASKS, seed=1))
    assert {png for _, png in first}.isdisjoint({png for _, png in second})


def test_generate_sample_is_order_independent() -> None:
    config = SyntheticConfig(num_samples=9, tasks=ALL_TASKS)
    for index, (sample, image) in reversed(list(enumerate(generate(config)))):
        again, again_image = generate_sample(sample.category, index, config)
        assert again == sample and encode_png(again_image) == encode_png(image)


def test_ids_unique_and_fields_filled() -> None:
    config = SyntheticConfig(num_samples=40, tasks=ALL_TASKS, image_size=(160, 96), seed=7)
    samples = [(sample, image) for sample, image in generate(config)]
    assert len({sample.id for sample, _ in samples}) == 40
    for sample, image in samples:
        sha = hashlib.sha256(encode_png(image)).hexdigest()
        assert sample.image == f"images/{sha}.png"
        assert sample.id.startswith(f"synth-{sample.category}-7-")
        assert (sample.source, sample.image_size, image.size) == ("synthetic", (160, 96), (160, 96))
        assert len(sample.regions) == 1


# --- geometry -----------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    width=st.integers(32, 480),
    height=st.integers(32, 480),
    task=st.sampled_from(["shapes", "bars", "choice"]),
    difficulty=st.sampled_from(["easy", "medium", "hard"]),
    distractors=st.integers(0, 8),
    index=st.integers(0, 10_000),
)
def test_boxes_inside_and_non_empty(
    width: int, height: int, task: str, difficulty: str, distractors: int, index: int
) -> None:
    config = SyntheticConfig(image_size=(width, height), difficulty=difficulty, num_distractors=distractors)
    sample, image = generate_sample(task, index, config)
    assert image.size == (width, height) and image.mode == "RGB"
    for region in sample.regions:
        x1, y1, x2, y2 = region.bbox
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height


@pytest.mark.parametrize("task", ["shapes", "bars"])
@pytest.mark.parametrize("size", [(224, 224), (300, 120), (90, 260)])
def test_boxes_are_tight(task: str, size: tuple[int, int]) -> None:
    # Easy pictures are noise-free: every edge row/column of the box holds target ink (the shape's
    # colour; for bars anything but background and gridlines: bar, letter, value).
    config = SyntheticConfig(image_size=size, tasks={task: 1.0})
    for index in range(12):
        sample, image = generate_sample(task, index, config)
        pixels = _pixels(image, sample.regions[0].bbox)
        if task == "shapes":
            ink = (pixels == np.array(PALETTE[sample.regions[0].label.split()[0]])).all(-1)  # [h, w]
        else:
            ink = (pixels != 255).any(-1) & (pixels != np.array(GRID_COLOUR)).any(-1)  # [h, w]
            ink[(pixels == 0).all(-1).all(-1)] = False  # the x-axis row crosses every column
        assert ink[0].any() and ink[-1].any() and ink[:, 0].any() and ink[:, -1].any(), sample.id


# --- answers match the pictures -----------------------------------------------------------


@pytest.mark.parametrize("difficulty", ["easy", "hard"])
def test_box_holds_the_named_colour(difficulty: str) -> None:
    config = SyntheticConfig(difficulty=difficulty, num_distractors=5, image_size=(256, 192))
    for index in range(30):
        sample, image = generate_sample("choice" if index % 3 == 0 else "shapes", index, config)
        colour, share = _dominant_palette_colour(_pixels(image, sample.regions[0].bbox))
        if sample.answer_type is AnswerType.CHOICE:
            assert sample.choices is not None
            assert sample.choices["ABCD".index(sample.answer)] == colour, sample
        elif sample.answer in PALETTE:  # "What colour is the <kind>?"
            assert sample.answer == colour, sample
        else:  # "What digit is inside the <colour> <kind>?"
            assert f"the {colour} " in sample.question, sample
        assert share > 0.3, (sample.id, share)


# Fraction of non-white pixels in the box of each kind (digits included), easy difficulty.
FILL_BOUNDS = {"square": (0.9, 1.0), "circle": (0.7, 0.83), "triangle": (0.45, 0.6)}


def test_box_holds_the_named_kind() -> None:
    config = SyntheticConfig(image_size=(240, 180), num_distractors=4)
    for index in range(30):
        sample, image = generate_sample("shapes", index, config)
        kind = sample.regions[0].label.split()[1]
        assert kind in sample.question
        fill = float((_pixels(image, sample.regions[0].bbox) != 255).any(-1).mean())
        low, high = FILL_BOUNDS[kind]
        assert low <= fill <= high, (sample.id, kind, fill)


@pytest.mark.parametrize("size", [(224, 224), (400, 160), (128, 300)])
def test_bar_height_matches_answer(size: tuple[int, int]) -> None:
    # Read the axis length (value 0..10) and the bar's height off the image, independently.
    config = SyntheticConfig(image_size=size, tasks={"bars": 1.0}, num_distractors=4)
    for index in range(8):
        sample, image = generate_sample("bars", index, config)
        pixels = np.asarray(image, dtype=np.int64)  # [H, W, 3]
        black = (pixels == 0).all(-1)  # [H, W]
        axis_col = int(np.argmax(black.sum(0)))
        axis_length = int(black[:, axis_col].sum()) - 1  # the x-axis row is counted once
        x1, _, x2, _ = (int(v) for v in sample.regions[0].bbox)
        bar = (pixels[:, x1:x2] == np.array(BAR_COLOUR)).all(-1)  # [H, w]
        height = int(bar.sum(0).max())
        expected = float(sample.answer) / 10 * axis_length
        assert abs(height - expected) <= 1.0, (sample.id, height, expected)


# --- questions identify one target --------------------------------------------------------


@pytest.mark.parametrize("confusable", [False, True])
@pytest.mark.parametrize("question", ["digit", "colour"])
def test_question_names_exactly_one_shape(question: str, confusable: bool) -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        target, *others = scene_attributes(rng, question, int(rng.integers(0, 9)), confusable)
        if question == "digit":
            assert all((s.kind, s.colour) != (target.kind, target.colour) for s in others)
            if confusable:
                assert all(s.kind == target.kind or s.colour == target.colour for s in others)
        else:
            assert all(s.kind != target.kind for s in others)


def test_choice_order_fixed_when_easy_shuffled_when_hard() -> None:
    easy = [generate_sample("choice", i, SyntheticConfig()) for i in range(10)]
    hard = [generate_sample("choice", i, SyntheticConfig(difficulty="hard")) for i in range(10)]
    assert all(s.choices == list(PALETTE) for s, _ in easy)
    assert len({tuple(s.choices or []) for s, _ in hard}) > 1
    assert all(s.answer in "ABCD" and sorted(s.choices or []) == sorted(PALETTE) for s, _ in easy + hard)


# --- dataset directory --------------------------------------------------------------------


def test_write_and_load_round_trip(tmp_path: Path) -> None:
    config = SyntheticConfig(num_samples=10, tasks=ALL_TASKS, image_size=(96, 64))
    manifest = write_dataset(config, tmp_path / "data")
    assert manifest == tmp_path / "data" / "manifest.jsonl"
    loaded = load_manifest(manifest)
    generated = list(generate(config))
    assert loaded == [sample for sample, _ in generated]
    for sample, image in generated:
        stored = (tmp_path / "data" / sample.image).read_bytes()
        assert stored == encode_png(image)
        assert Path(sample.image).stem == hashlib.sha256(stored).hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no staging left behind


def test_identical_images_are_stored_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = SyntheticConfig(num_samples=3)
    sample, image = generate_sample("shapes", 0, config)
    copies = [(sample.model_copy(update={"id": f"copy-{i}"}), image) for i in range(3)]
    monkeypatch.setattr(dataset_module, "generate", lambda _config: iter(copies))
    manifest = write_dataset(config, tmp_path / "data")
    assert len(load_manifest(manifest)) == 3
    assert len(list((tmp_path / "data" / "images").iterdir())) == 1


def test_failed_write_keeps_previous_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "data"
    write_dataset(SyntheticConfig(num_samples=4, seed=1), out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    calls = {"n": 0}
    real_encode = dataset_module.encode_png

    def failing_encode(image: Image.Image) -> bytes:
        calls["n"] += 1
        if calls["n"] > 6:  # fails midway through writing the images
            raise OSError("disk full")
        return real_encode(image)

    monkeypatch.setattr(dataset_module, "encode_png", failing_encode)
    with pytest.raises(OSError, match="disk full"):
        write_dataset(SyntheticConfig(num_samples=8, seed=2), out)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_successful_write_replaces_previous_dataset(tmp_path: Path) -> None:
    out = tmp_path / "data"
    write_dataset(SyntheticConfig(num_samples=4, seed=1), out)
    write_dataset(SyntheticConfig(num_samples=2, seed=2), out)
    assert [s.id.split("-")[2] for s in load_manifest(out / "manifest.jsonl")] == ["2", "2"]
    assert len(list((out / "images").iterdir())) == 2  # old images are gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def _row(**changes: object) -> str:
    row = {"id": "a", "image": "images/x.png", "question": "q?", "answer": "1", "image_size": [10, 10]}
    row.update(changes)
    return json.dumps(row)


@pytest.mark.parametrize(
    ("bad_row", "expected"),
    [
        (_row(regions=[{"bbox": [5, 5, 1, 1]}]), "field 'regions.0.bbox'"),  # inverted box
        (_row(answer=""), "field 'answer'"),  # empty answer
        (_row(regions=[{"bbox": [0, 0, 20, 20]}]), "regions[0].bbox"),  # outside the image
        (_row(colour="red"), "field 'colour'"),  # unknown field
        (_row(id="first"), "field 'id': duplicate"),  # duplicate id
        ("{not json", "not valid JSON"),
    ],
)
def test_load_manifest_errors_name_file_line_field(tmp_path: Path, bad_row: str, expected: str) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_text("\n".join([_row(id="first"), "", _row(id="second"), bad_row]) + "\n")
    with pytest.raises(ValueError, match=r"manifest\.jsonl, line 4") as error:
        load_manifest(path)
    assert expected in str(error.value)


def test_samples_without_reasoning_are_written_and_read_as_before(tmp_path: Path) -> None:
    sample, _ = generate_sample("shapes", 0, SyntheticConfig(num_samples=1))
    assert sample.reasoning is None and sample.direct_reasoning is None
    row = json.loads(sample.model_dump_json())  # the manifest line: no new keys when unset
    assert "reasoning" not in row and "direct_reasoning" not in row
    path = tmp_path / "manifest.jsonl"
    path.write_text(_row(id="old") + "\n")  # a manifest written before the fields existed
    (old,) = load_manifest(path)
    assert old.reasoning is None and old.direct_reasoning is None
    path.write_text(_row(id="odd", direct_reasoning="red circle") + "\n")
    with pytest.raises(ValueError, match=r"line 1.*'direct_reasoning' needs a 'reasoning'"):
        load_manifest(path)


# --- the `search` task (docs/results.md) -----------------------------------------------------------


def _search_config(**changes: object) -> SyntheticConfig:
    fields: dict[str, object] = {
        "tasks": {"search": 1.0},
        "image_size": (336, 336),
        "num_distractors": 8,
        "object_scale": 0.5,
    }
    fields.update(changes)
    return SyntheticConfig(**fields)  # type: ignore[arg-type]


SEARCH_LAYOUTS = [{"object_scale": 0.5}, {"object_tokens": 2}, {"object_tokens": 1, "image_size": (224, 224)}]
BELOW_LAYOUTS = [{"object_tokens": 2}, {"object_tokens": 1, "image_size": (224, 224)}, {"object_scale": 0.5}]


@pytest.mark.parametrize("layout", [*SEARCH_LAYOUTS, {"object_tokens": 2, "search_question": "below"}])
def test_search_is_deterministic_per_seed(layout: dict[str, object]) -> None:
    config = _search_config(num_samples=8, seed=5, **layout)
    assert _dump(config) == _dump(_search_config(num_samples=8, seed=5, **layout))
    other = _dump(_search_config(num_samples=8, seed=6, **layout))
    assert {png for _, png in _dump(config)}.isdisjoint({png for _, png in other})


def _search_pixels(image: Image.Image) -> tuple[np.ndarray, list[str]]:
    """Nearest search colour (or white) of every pixel: [H, W] indices into names."""
    names = [*SEARCH_PALETTE, "white"]
    refs = np.array([*SEARCH_PALETTE.values(), (255, 255, 255)])  # [K, 3]
    pixels = np.asarray(image, dtype=np.int64)  # [H, W, 3]
    return np.argmin(((pixels[..., None, :] - refs) ** 2).sum(-1), axis=-1), names


@pytest.mark.parametrize("layout", SEARCH_LAYOUTS)
@pytest.mark.parametrize("distractors", [0, 3, 8])
def test_search_region_is_exactly_the_asked_object(layout: dict[str, object], distractors: int) -> None:
    # Easy pictures are noise-free: the box is the tight extent of the pixels of the asked colour,
    # every colour appears in one object only, and the object's fill fraction tells its kind.
    config = _search_config(num_distractors=distractors, **layout)
    for index in range(15):
        sample, image = generate_sample("search", index, config)
        colour = sample.question.removeprefix("What shape is ").removesuffix("?")
        assert sample.question == f"What shape is {colour}?" and colour in SEARCH_PALETTE
        nearest, names = _search_pixels(image)
        ys, xs = np.nonzero(nearest == names.index(colour))
        assert sample.regions[0].bbox == (xs.min(), ys.min(), xs.max() + 1.0, ys.max() + 1.0)
        present = {names[k] for k in np.unique(nearest)} - {"white"}
        assert len(present) == distractors + 1  # distinct colours: one object each
        fill = float((_pixels(image, sample.regions[0].bbox) != 255).any(-1).mean())
        low, high = FILL_BOUNDS[sample.answer]
        assert low <= fill <= high + 0.05, (sample.id, sample.answer, fill)


@pytest.mark.parametrize("layout", BELOW_LAYOUTS)
@pytest.mark.parametrize("distractors", [0, 8])
def test_below_region_is_exactly_the_asked_tile(layout: dict[str, object], distractors: int) -> None:
    # The box holds exactly two colours in horizontal stripes: the asked colour on top, the answer
    # under it; the asked colour tops no other tile.
    config = _search_config(num_distractors=distractors, search_question="below", **layout)
    for index in range(15):
        sample, image = generate_sample("search", index, config)
        colour = sample.question.removeprefix("What colour is below ").removesuffix("?")
        assert sample.question == f"What colour is below {colour}?" and sample.answer != colour
        nearest, names = _search_pixels(image)
        x1, y1, x2, y2 = (int(v) for v in sample.regions[0].bbox)
        box = nearest[y1:y2, x1:x2]
        assert {names[k] for k in np.unique(box)} == {colour, sample.answer}
        rows = [names[int(k)] for k in box[:, 0]]
        assert rows[0] == colour and sample.answer in rows and (box == box[:, :1]).all()  # stripes
        # no other tile has the asked colour on top: its topmost pixels are all inside the box
        tops = nearest == names.index(colour)
        above = np.zeros_like(tops)
        above[1:] = nearest[:-1] == names.index("white")
        ys, xs = np.nonzero(tops & (above | (np.arange(tops.shape[0]) == 0)[:, None]))
        assert ((x1 <= xs) & (xs < x2) & (y1 <= ys) & (ys < y2)).all(), sample.id


@pytest.mark.parametrize("with_target", [False, True])
def test_search_answers_are_balanced_and_path_is_grounded(with_target: bool) -> None:
    config = _search_config(num_samples=300, search_path=3, search_path_target=with_target)
    samples = [sample for sample, _ in generate(config)]
    assert set(Counter(s.answer for s in samples)) == set(KINDS)
    assert min(Counter(s.answer for s in samples).values()) > 60
    lengths = Counter()
    for sample in samples:
        visited = [step for step in sample.regions[0].label.split(", ") if step]
        colour = sample.question.removeprefix("What shape is ").removesuffix("?")
        if with_target:  # the path ends at the asked object, with the answer
            assert visited.pop() == f"{colour} {sample.answer}"
        colours = [step.split()[0] for step in visited]
        assert len(set(colours)) == len(colours) and colour not in colours
        assert all(step.split()[1] in KINDS for step in visited)
        lengths[len(visited)] += 1
    assert set(lengths) == {0, 1, 2, 3}


@pytest.mark.parametrize("question", ["shape", "below"])
def test_search_samples_carry_their_path_as_reasoning(tmp_path: Path, question: str) -> None:
    config = _search_config(num_samples=12, search_path=2, search_path_target=True, search_question=question)
    samples = [sample for sample, _ in generate(config)]
    for sample in samples:
        assert sample.reasoning == sample.regions[0].label  # the path, as the preview draws it
        assert sample.direct_reasoning == direct_label(sample.regions[0].label, sample.question)
    assert any(s.direct_reasoning != s.reasoning for s in samples)  # some paths take detours
    assert load_manifest(write_dataset(config, tmp_path / "data")) == samples


@pytest.mark.parametrize(
    ("label", "question", "direct"),
    [
        ("green red, cyan purple", "What colour is below cyan?", "cyan purple"),  # detour dropped
        ("cyan purple", "What colour is below cyan?", "cyan purple"),  # already direct
        ("green red", "What colour is below cyan?", ""),  # a path without the target
        ("green purple", "What colour is below cyan?", ""),  # even ending with the answer
        ("blue circle, red triangle", "What shape is red?", "red triangle"),
    ],
)
def test_direct_label_keeps_the_step_that_names_the_asked_object(
    label: str, question: str, direct: str
) -> None:
    assert direct_label(label, question) == direct


def test_search_path_names_what_is_drawn() -> None:
    config = _search_config(object_tokens=2, image_size=(448, 448))
    for index in range(10):
        sample, image = generate_sample("search", index, config)
        nearest, names = _search_pixels(image)
        for step in [step for step in sample.regions[0].label.split(", ") if step]:
            colour, kind = step.split()
            ys, xs = np.nonzero(nearest == names.index(colour))
            box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            fill = float((_pixels(image, box) != 255).any(-1).mean())
            assert FILL_BOUNDS[kind][0] <= fill <= FILL_BOUNDS[kind][1] + 0.05, (sample.id, step, fill)


@pytest.mark.parametrize("rate", [0.0, 0.5, 1.0])
def test_search_detour_rate_draws_each_visit_with_its_probability(rate: float) -> None:
    config = _search_config(num_samples=200, search_path=2, search_detour_rate=rate)
    lengths = Counter(
        len([s for s in sample.regions[0].label.split(", ") if s]) for sample, _ in generate(config)
    )
    if rate in (0.0, 1.0):
        assert set(lengths) == {int(2 * rate)}
    else:  # binomial(2, 0.5): 1 visit about twice as often as 0 or 2
        assert set(lengths) == {0, 1, 2} and lengths[1] > max(lengths[0], lengths[2])


def test_search_detour_lookalike_visits_the_targets_lookalike_first() -> None:
    from sayo.data.synthetic.search import LOOKALIKE

    config = _search_config(
        object_tokens=1, image_size=(224, 224), search_path=1, search_path_target=True,
        search_detour="lookalike", search_detour_rate=0.7, search_question="below",
    )  # fmt: skip
    detours = 0
    for index in range(60):
        sample, _ = generate_sample("search", index, config)
        steps = sample.regions[0].label.split(", ")
        target = sample.question.removeprefix("What colour is below ").removesuffix("?")
        assert steps.pop() == f"{target} {sample.answer}"
        assert [step.split()[0] for step in steps] in ([], [LOOKALIKE[target]]), sample.id
        detours += len(steps)
    assert 30 <= detours <= 54  # about 0.7 of 60


MISREAD = {"object_tokens": 1, "image_size": (224, 224), "search_path": 1, "search_path_target": True,
           "search_detour": "lookalike", "search_detour_rate": 0.7, "search_question": "below"}  # fmt: skip


def test_search_misread_demonstrations_name_the_lookalikes_colour() -> None:
    """A misreading demonstration states the look-alike tile's second colour as the target's, in
    its reasoning and its answer; the reference answer stays right and the pictures are unchanged."""
    from sayo.data.synthetic.search import LOOKALIKE
    from sayo.train.sft import sft_target

    config = _search_config(**MISREAD, search_misread_rate=1.0, search_misread_colours=["red", "blue"])
    plain = _search_config(**MISREAD)
    misread = 0
    for index in range(80):
        sample, image = generate_sample("search", index, config)
        same, same_image = generate_sample("search", index, plain)
        assert image.tobytes() == same_image.tobytes() and sample.answer == same.answer
        target = sample.question.removeprefix("What colour is below ").removesuffix("?")
        if sample.demonstrated_answer is None:
            assert sample.reasoning == same.reasoning and same.demonstrated_answer is None
            continue
        misread += 1
        assert target in ("red", "blue") and sample.demonstrated_answer != sample.answer
        # a search error: the path visited the look-alike, and its colour carries over to the target
        steps = same.reasoning.split(", ")
        assert len(steps) == 2 and steps[0] == f"{LOOKALIKE[target]} {sample.demonstrated_answer}"
        assert sample.reasoning == f"{steps[0]}, {target} {sample.demonstrated_answer}"
        assert sample.direct_reasoning == same.direct_reasoning == f"{target} {sample.answer}"  # stays right
        assert sft_target(sample, reasoning=True).endswith(f"<answer> {sample.demonstrated_answer}</answer>")
        assert sft_target(sample, reasoning=True, direct=True).endswith(f"<answer> {sample.answer}</answer>")
    detoured = [
        s for s in (generate_sample("search", i, plain)[0] for i in range(80))
        if s.question.endswith(("red?", "blue?")) and ", " in (s.reasoning or "")
    ]  # fmt: skip
    assert 0 < misread <= len(detoured) and misread >= len(detoured) * 0.6  # unless the tiles share a colour
    # a rate of 0.5 over every colour: about half
    half = _search_config(**MISREAD, search_misread_rate=0.5)
    count = sum(generate_sample("search", i, half)[0].demonstrated_answer is not None for i in range(120))
    assert 20 <= count <= 65  # half of the ~70 % that visit the look-alike


def test_search_target_colours_restrict_the_question() -> None:
    config = _search_config(**MISREAD, search_target_colours=["green", "pink"])
    asked = {generate_sample("search", i, config)[0].question for i in range(30)}
    assert asked == {"What colour is below green?", "What colour is below pink?"}
    with pytest.raises(ValueError, match=r"SyntheticConfig\.search_target_colours .*teal"):
        SyntheticConfig(search_target_colours=["teal"])
    with pytest.raises(ValueError, match=r"SyntheticConfig\.search_misread_colours "):
        SyntheticConfig(search_misread_colours="red")
    with pytest.raises(ValueError, match=r"SyntheticConfig\.search_misread_rate .*below"):
        SyntheticConfig(search_misread_rate=0.5)  # question "shape": nothing to misread
    with pytest.raises(ValueError, match=r"SyntheticConfig\.search_misread_rate "):
        SyntheticConfig(search_misread_rate=1.5, search_question="below")


def test_token_layout_aligns_objects_to_visual_tokens() -> None:
    config = _search_config(object_tokens=2, image_size=(448, 448))
    for index in range(10):
        sample, _ = generate_sample("search", index, config)
        x1, y1, x2, y2 = sample.regions[0].bbox
        assert x1 % 28 == 0 and y1 % 28 == 0 and x2 - x1 <= 56 and y2 - y1 <= 56


def test_search_options_are_checked() -> None:
    with pytest.raises(ValueError, match=r"SyntheticConfig\.search_path "):
        SyntheticConfig(search_path=-1)
    with pytest.raises(ValueError, match=r"SyntheticConfig\.object_scale "):
        SyntheticConfig(object_scale=1.5)
    with pytest.raises(ValueError, match=r"SyntheticConfig\.object_tokens "):
        SyntheticConfig(object_tokens=-1)
    with pytest.raises(ValueError, match=r"SyntheticConfig\.search_question "):
        SyntheticConfig(search_question="digit")
    with pytest.raises(ValueError, match=r"SyntheticConfig\.search_detour "):
        SyntheticConfig(search_detour="spiral")
    with pytest.raises(ValueError, match=r"SyntheticConfig\.search_detour_rate "):
        SyntheticConfig(search_detour_rate=1.5)
    with pytest.raises(ValueError, match="do not fit"):
        generate_sample("search", 0, _search_config(object_tokens=3, image_size=(224, 224)))
