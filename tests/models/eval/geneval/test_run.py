"""The GenEval library flow on tiny real models: `generate_geneval` into GenEval's layout (seed contract, resume),
then `score_geneval_folder` into results.jsonl, its protocol file and the summary."""

import json

import pytest

from models.eval.geneval.colour import load_colour_classifier
from models.eval.geneval.detector import build_detector
from models.eval.geneval.results import read_results
from models.eval.geneval.run import (
    ORIGINAL,
    PromptsUsed,
    generate_geneval,
    protocol_path,
    recorded_conditioning,
    score_geneval_folder,
    scoring_jobs,
)
from models.runs.generation import STATUS_SKIPPED, STATUS_WRITTEN, RunOptions
from tests.models.eval.geneval.factories import save_mmdet_checkpoint, write_tiny_clip_folder

METADATA = [
    {"tag": "single_object", "include": [{"class": "car", "count": 1}], "prompt": "a photo of a car"},
    {"tag": "counting", "include": [{"class": "car", "count": 2}], "exclude": [{"class": "car", "count": 3}],
     "prompt": "a photo of two cars"},
]


class Recorder:
    """Collects the generation loop's events, as the CLI's reporter would show them."""

    def __init__(self):
        self.started_with, self.done = None, []

    def started(self, to_make: int, finished: int) -> None:
        self.started_with = (to_make, finished)

    def ar_step(self, done: int, total: int) -> None:
        pass

    def image_done(self, result) -> None:
        self.done.append(result)


@pytest.fixture(scope="module")
def pipe(tiny_t2i_folder):
    from models import load_pipeline

    return load_pipeline(tiny_t2i_folder, device="cpu", dtype="fp32")


def test_generate_then_score(pipe, tmp_path, monkeypatch):
    monkeypatch.setenv("LINA_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "geneval"
    settings = pipe.sampling_settings(ar_steps=4, diffusion_steps=3)
    run = {"settings": settings, "options": RunOptions(batch_size=2), "model": "tiny", "images_per_prompt": 2,
           "seed": 11, "prompts": ["a car, detailed", "two cars, detailed"]}
    events = Recorder()
    results = generate_geneval(pipe, METADATA, out, events=events, **run)
    assert events.started_with == (4, 0) and [r.status for r in results] == [STATUS_WRITTEN] * 4
    assert [(r.path.relative_to(out).as_posix(), r.metadata.seed, r.metadata.prompt) for r in results] == [
        ("00000/samples/00000.png", 11, "a car, detailed"), ("00000/samples/00001.png", 12, "a car, detailed"),
        ("00001/samples/00000.png", 13, "two cars, detailed"), ("00001/samples/00001.png", 14, "two cars, detailed"),
    ]
    assert json.loads((out / "00001" / "metadata.jsonl").read_text()) == METADATA[1]
    again = Recorder()
    assert {r.status for r in generate_geneval(pipe, METADATA, out, events=again, **run)} == {STATUS_SKIPPED}
    assert again.started_with == (0, 4)

    jobs = scoring_jobs(out)
    assert [(job.index, job.path.name) for job in jobs] == [(0, "00000.png"), (0, "00001.png"), (1, "00000.png"),
                                                            (1, "00001.png")]
    assert recorded_conditioning(jobs) == "rewritten"  # the PNGs record the dense prompts
    detector = build_detector("geneval-mask2former", save_mmdet_checkpoint(tmp_path / "m.pth", favour="car"))
    colour = load_colour_classifier(write_tiny_clip_folder(tmp_path / "clip"))
    seen = []
    score = score_geneval_folder(out, detector, colour, prompts=PromptsUsed(ORIGINAL),
                                 progress=lambda done, total: seen.append((done, total)))
    assert seen == [(2, 4), (4, 4)]  # one detector batch per prompt
    assert score.results == out / "results.jsonl" and len(read_results(score.results)) == 4
    assert score.summary.images == 4 and {t.tag: t.accuracy for t in score.summary.tasks} == \
           {"single_object": 1.0, "counting": 0.0}  # scores ~0.66 pass 0.3, never the counting threshold 0.9
    protocol = json.loads(protocol_path(score.results).read_text())
    assert protocol["prompts"] == {"conditioning": "original", "metadata": None, "rewritten": None}
    assert protocol["detector"]["weights"]["sha256"] == detector.info.weights.sha256
    assert protocol["colour"]["weights"]["sha256"] == colour.info.weights.sha256
    assert protocol["rules"]["threshold"] == 0.3 and protocol["versions"]["lina"]
