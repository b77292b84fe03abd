"""GenEval's detector backends and colour classifier end to end on tiny random models built by the test:
mmdetection's test-time pipeline pieces against references written from mmdetection's code, then
detect → filter → evaluate (with the CLIP colour classifier) → results.jsonl, checked for structure."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from models.errors import GenEvalWeightsError
from models.eval.geneval.colour import BACKGROUND, load_colour_classifier, masked_crop
from models.eval.geneval.detector import HF_BACKEND, NOT_GENEVAL_NOTE, build_detector
from models.eval.geneval.detector_convert import GENEVAL_CLASS_NAMES
from models.eval.geneval.detector_weights import CONFIG_FILE, WEIGHTS_FILE, convert_once, read_converted
from models.eval.geneval.mask2former import instances, mask_to_boxes, prepare_image, rescaled_size, resize_uint8
from models.eval.geneval.results import KEYS, ResultLine, read_results, write_results
from models.eval.geneval.rules import COLOURS, Detection, evaluate, filter_detections
from tests.models.eval.geneval.factories import save_mmdet_checkpoint, write_tiny_clip_folder

RED_CAR = {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}], "prompt": "a photo of a red car"}
TWO_CARS = {"tag": "counting", "include": [{"class": "car", "count": 2}], "exclude": [{"class": "car", "count": 3}],
            "prompt": "a photo of two cars"}
CAR_LEFT_OF_DOG = {"tag": "position", "include": [{"class": "dog", "count": 1},
                   {"class": "car", "count": 1, "position": ["left of", 0]}], "prompt": "a photo of a car left of a dog"}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("geneval-weights")
    return save_mmdet_checkpoint(folder / "tiny.pth", favour="car"), write_tiny_clip_folder(folder / "clip")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LINA_CACHE", str(tmp_path / "lina-cache"))
    return tmp_path / "lina-cache"


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


# ----------------------------------------------------------------------------------------------------
# mmdetection's test-time pipeline
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "expected"), [
    ((512, 512), (800, 800)), ((1024, 1024), (800, 800)), ((640, 480), (1067, 800)), ((2000, 500), (1333, 333)),
])
def test_rescaled_size_keeps_the_ratio_within_1333_by_800(size, expected):
    assert rescaled_size(*size) == expected


def test_prepare_image_resizes_pads_and_normalises():
    prepared = prepare_image(Image.new("RGB", (40, 50), (123, 116, 104)))
    assert prepared.original == (50, 40) and prepared.resized == (1000, 800) and prepared.padded == (1024, 800)
    inside = prepared.pixels[0, :, 500, 400]
    torch.testing.assert_close(inside, torch.tensor([-0.675 / 58.395, -0.28 / 57.12, 0.47 / 57.375]))
    grey = (torch.tensor(128.0) - torch.tensor([123.675, 116.28, 103.53])) / torch.tensor([58.395, 57.12, 57.375])
    torch.testing.assert_close(prepared.pixels[0, :, 1000:, :].amin(dim=(1, 2)), grey)  # padded with 128, normalised
    torch.testing.assert_close(prepared.pixels[0, :, 1000:, :].amax(dim=(1, 2)), grey)


def test_resize_is_opencvs_fixed_point_bilinear():
    row = np.array([[[0, 0, 0], [255, 255, 255]]], dtype=np.uint8)  # 2x1 → 3x1: edge taps clamp, the middle blends
    assert resize_uint8(row, 3, 1)[0, :, 0].tolist() == [0, 128, 255]
    quads = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)  # an exact halving averages 2x2 blocks, rounding half up
    assert resize_uint8(quads, 2, 2)[0, 0].tolist() == [(0 + 3 + 12 + 15 + 2) // 4, (1 + 4 + 13 + 16 + 2) // 4,
                                                        (2 + 5 + 14 + 17 + 2) // 4]


def test_resize_matches_opencv_bit_for_bit():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(1)
    for height, width in ((512, 512), (1024, 1024), (37, 53), (480, 640)):
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        w, h = rescaled_size(width, height)
        assert np.array_equal(resize_uint8(image, w, h), cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR))


def mmdet_mask2bbox(masks):
    """mmdetection's mask2bbox, as written there (a loop over masks)."""
    boxes = torch.zeros((masks.shape[0], 4))
    x_any, y_any = masks.any(dim=1), masks.any(dim=2)
    for i in range(masks.shape[0]):
        x, y = torch.where(x_any[i])[0], torch.where(y_any[i])[0]
        if len(x) and len(y):
            boxes[i] = torch.tensor([x[0], y[0], x[-1] + 1, y[-1] + 1], dtype=torch.float32)
    return boxes


def test_mask_to_boxes_matches_mmdetections_loop():
    masks = torch.rand(7, 13, 17, generator=torch.Generator().manual_seed(0)) > 0.93
    masks[3] = False  # an empty mask gives a zero box
    assert torch.equal(mask_to_boxes(masks), mmdet_mask2bbox(masks))


def test_instances_follow_mmdetections_instance_postprocess():
    generator = torch.Generator().manual_seed(2)
    queries, classes = 5, 4
    class_logits = torch.randn(queries, classes + 1, generator=generator)
    mask_logits = torch.randn(queries, 16, 12, generator=generator)
    prepared = prepare_image(Image.new("RGB", (40, 30)))
    assert (prepared.resized, prepared.padded) == ((800, 1067), (800, 1088))
    found = instances(class_logits, mask_logits, prepared, max_per_image=6)
    # MaskFormerHead.simple_test + MaskFormerFusionHead.simple_test/instance_postprocess, step by step
    masks = F.interpolate(mask_logits[None], size=(800, 1088), mode="bilinear", align_corners=False)[0]
    masks = F.interpolate(masks[None, :, :800, :1067], size=(30, 40), mode="bilinear", align_corners=False)[0]
    scores = F.softmax(class_logits, dim=-1)[:, :-1]
    labels = torch.arange(classes).unsqueeze(0).repeat(queries, 1).flatten(0, 1)
    top_scores, top = scores.flatten(0, 1).topk(6, sorted=True)
    chosen = masks[top // classes]
    binary = (chosen > 0).float()
    mask_scores = (chosen.sigmoid() * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    assert torch.equal(found.labels, labels[top])
    torch.testing.assert_close(found.scores, top_scores * mask_scores)
    assert torch.equal(found.masks, binary.bool()) and torch.equal(found.boxes, mmdet_mask2bbox(binary.bool()))


def test_masked_crop_paints_the_background_grey_and_crops_the_box():
    image = Image.new("RGB", (20, 10), (200, 0, 0))
    mask = np.zeros((10, 20), dtype=bool)
    mask[2:6, 4:8] = True
    crop = masked_crop(image, Detection((3.0, 1.0, 9.0, 7.0), 0.9, mask=mask))
    assert crop.size == (6, 6)
    grey = Image.new("RGB", (1, 1), BACKGROUND).getpixel((0, 0))
    assert crop.getpixel((0, 0)) == grey and crop.getpixel((1, 1)) == (200, 0, 0)


# ----------------------------------------------------------------------------------------------------
# Backends end to end
# ----------------------------------------------------------------------------------------------------


def test_geneval_backend_detect_filter_evaluate_results(weights, cache, tmp_path):
    checkpoint, clip = weights
    detector = build_detector("geneval-mask2former", checkpoint, "cpu")
    colour = load_colour_classifier(clip, "cpu")
    assert detector.info.backend == "geneval-mask2former" and detector.info.note is None
    assert detector.info.weights.sha256 == convert_once(checkpoint).source.sha256
    assert detector.info.converted.path.parent.parent == cache / "geneval" / "detector"

    images = [noise_image(48, 40, seed) for seed in (0, 1)]
    batched = detector.detect_batch(images)
    lines = []
    for index, (image, raw) in enumerate(zip(images, batched)):
        assert set(raw) <= set(GENEVAL_CLASS_NAMES) and sum(map(len, raw.values())) == 100  # max_per_image (query, class) pairs
        for found in raw.values():
            assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
            assert all(d.mask.shape == (40, 48) and d.mask.dtype == bool for d in found)
        single = detector.detect(image)
        assert {name: [d.box for d in found] for name, found in single.items()} == \
               {name: [d.box for d in found] for name, found in raw.items()}
        for metadata in (RED_CAR, TWO_CARS, CAR_LEFT_OF_DOG):
            kept = filter_detections(raw, metadata["tag"])
            verdict = evaluate(kept, metadata, colour.bind(image))
            lines.append(ResultLine.from_verdict(f"{index:05d}.png", metadata, kept, verdict))
    red = [line for line in lines if line.tag == "colors"]
    assert all(line.details["car"] for line in red)  # the favoured class passes the 0.3 threshold
    assert all(line.correct or line.reason.startswith("expected red car>=1, found 0 red; and 1 ") for line in red)
    assert any(c in red[0].reason for c in COLOURS) or red[0].correct
    counting = [line for line in lines if line.tag == "counting"]
    assert all(not line.correct and line.reason == "expected car>=2, found 0" for line in counting)  # none ≥ 0.9
    position = [line for line in lines if line.tag == "position"]
    assert all(line.reason.startswith("expected dog>=1, found 0") for line in position)

    path = tmp_path / "results.jsonl"
    write_results(path, lines)
    rows = [json.loads(text) for text in path.read_text().splitlines()]
    assert all(tuple(row) == KEYS and isinstance(row["details"], str) for row in rows)
    assert [line.details for line in read_results(path)] == [line.details for line in lines]


def test_hf_backend_reads_a_transformers_folder_and_says_it_is_not_genevals(weights, cache):
    converted = convert_once(weights[0])
    assert {p.name for p in converted.folder.iterdir()} >= {CONFIG_FILE, WEIGHTS_FILE}
    detector = build_detector(HF_BACKEND, converted.folder, "cpu")
    assert detector.info.note == NOT_GENEVAL_NOTE and detector.info.weights.path == converted.weights.resolve()
    assert sum(map(len, detector.detect(noise_image(32, 32)).values())) == 100
    assert read_converted(converted.folder)[0].num_labels == 80


def test_mmdetection_backend_needs_mmdet(weights):
    pytest.importorskip("transformers")
    try:
        import mmdet  # noqa: F401
    except ImportError:
        with pytest.raises(GenEvalWeightsError, match="import mmdet"):
            build_detector("mmdetection", weights[0], "cpu")
    else:
        pytest.skip("mmdetection is installed here")


def test_unknown_backend(weights):
    with pytest.raises(GenEvalWeightsError, match="unknown detector backend 'yolo'"):
        build_detector("yolo", weights[0])
