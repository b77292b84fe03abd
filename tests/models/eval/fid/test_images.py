"""Sample sets: folders and ADM `.npz` batches in and out, class balance from lina metadata, and every bad input."""

import numpy as np
import pytest
from PIL import Image

from models.errors import EvalInputError
from models.eval.fid import adm_npz
from models.eval.fid.images import pack_adm_npz, scan_images
from models.runs.metadata import ImageMetadata
from models.runs.outputs import save_png
from tests.models.eval.fid.helpers import random_images, write_images

SIZE = 32  # the protocol's side in these tests; the checks do not depend on it


def c2i_metadata(index: int, class_label: int) -> ImageMetadata:
    return ImageMetadata(
        model="lina-c2i-256", repo_id=None, revision=None, task="c2i", index=index, seed=index, prompt=None,
        negative_prompt=None, class_label=class_label, size=(SIZE, SIZE), ar_steps=4, diffusion_steps=3, cfg=2.4,
        cfg_min=1.0, dtype="fp32", device="cpu", lina_version="0", torch_version="0",
    )


def scan(path, **options):
    return scan_images(path, SIZE, **{"resize": False, "reject_duplicates": True, **options})


def test_folder_in_npz_out_and_back(tmp_path):
    images = random_images(7, seed=0, size=SIZE)
    for index, image in enumerate(images):
        save_png(Image.fromarray(image), tmp_path / "run" / f"{index:05d}.png", c2i_metadata(index, index % 3))
    folder = scan(tmp_path / "run")
    assert folder.count == 7 and folder.class_labels == (0, 1, 2, 0, 1, 2, 0)
    assert folder.class_balance() == {"classes": 3, "min_per_class": 2, "max_per_class": 3, "balanced": False}
    np.testing.assert_array_equal(np.concatenate(list(folder.batches(3))), images)

    pack_adm_npz(folder, tmp_path / "run.npz", batch_size=2)
    with np.load(tmp_path / "run.npz") as npz:  # what ADM's evaluator and numpy read
        np.testing.assert_array_equal(npz["arr_0"], images)
        np.testing.assert_array_equal(npz["arr_1"], [0, 1, 2, 0, 1, 2, 0])
    batch = scan(tmp_path / "run.npz")
    assert (batch.kind, batch.count, batch.class_labels) == ("npz", 7, folder.class_labels)
    np.testing.assert_array_equal(np.concatenate(list(batch.batches(4))), images)


def test_adm_npz_written_by_numpy_is_read_in_batches(tmp_path):
    images = random_images(5, seed=1, size=SIZE)
    np.savez(tmp_path / "samples.npz", images)  # guided-diffusion's layout: arr_0 only
    assert adm_npz.images_shape(tmp_path / "samples.npz") == (5, SIZE, SIZE, 3)
    batches = list(adm_npz.iter_images(tmp_path / "samples.npz", 2))
    assert [len(batch) for batch in batches] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate(batches), images)
    assert scan(tmp_path / "samples.npz").class_labels is None


def test_content_hash_identifies_the_pixels_files(tmp_path):
    images = random_images(4, seed=2, size=SIZE)
    write_images(tmp_path / "a", images)
    write_images(tmp_path / "b", images)
    write_images(tmp_path / "c", images[::-1])
    key = scan(tmp_path / "a").content_sha256
    assert scan(tmp_path / "b").content_sha256 == key
    assert scan(tmp_path / "c").content_sha256 != key  # another order, other features order


def test_resize_brings_other_sizes_to_the_protocol(tmp_path):
    write_images(tmp_path / "mixed", random_images(2, seed=3, size=SIZE))
    Image.fromarray(random_images(1, seed=4, size=96)[0][:, :80]).save(tmp_path / "mixed" / "wide.png")  # 80 x 96
    with pytest.raises(EvalInputError, match=r"wide.png is 80x96, not 32x32; pass --resize .*bicubic"):
        scan(tmp_path / "mixed")
    images = scan(tmp_path / "mixed", resize=True)
    assert images.resized == 1
    batch = np.concatenate(list(images.batches(8)))
    assert batch.shape == (3, SIZE, SIZE, 3) and batch.dtype == np.uint8
    np.testing.assert_array_equal(batch[:2], random_images(2, seed=3, size=SIZE))  # right-sized images untouched


def test_npz_of_another_size_needs_resize(tmp_path):
    np.savez(tmp_path / "big.npz", random_images(3, seed=5, size=2 * SIZE))
    with pytest.raises(EvalInputError, match=r"big.npz \('arr_0'\) is 64x64, not 32x32; pass --resize"):
        scan(tmp_path / "big.npz")
    batch = np.concatenate(list(scan(tmp_path / "big.npz", resize=True).batches(2)))
    assert batch.shape == (3, SIZE, SIZE, 3)


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(EvalInputError, match="holds no images: expected \\*.png"):
        scan(tmp_path / "empty")


def test_unreadable_file_is_named(tmp_path):
    write_images(tmp_path / "run", random_images(2, seed=6, size=SIZE))
    (tmp_path / "run" / "00002.png").write_bytes(b"not a png at all")
    with pytest.raises(EvalInputError, match=r"00002.png is not a readable image"):
        scan(tmp_path / "run")


def test_duplicates_are_refused_in_samples_only(tmp_path):
    images = random_images(3, seed=7, size=SIZE)
    write_images(tmp_path / "run", np.concatenate([images, images[1:2]]))
    with pytest.raises(EvalInputError, match=r"00003.png has the same content as .*00001.png"):
        scan(tmp_path / "run")
    assert scan(tmp_path / "run", reject_duplicates=False).count == 4  # a reference set may hold duplicates
    np.savez(tmp_path / "dup.npz", np.concatenate([images, images[:1]]))
    with pytest.raises(EvalInputError, match="image 3 of 'arr_0' equals image 0"):
        scan(tmp_path / "dup.npz")


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"mu": np.zeros(3)}, "has no 'arr_0' images"),
        ({"arr_0": np.zeros((2, SIZE, SIZE, 3), dtype=np.float32)}, "float32 of shape"),
        ({"arr_0": np.zeros((2, SIZE, SIZE), dtype=np.uint8)}, "N x H x W x 3"),
        ({"arr_0": np.zeros((0, SIZE, SIZE, 3), dtype=np.uint8)}, "holds no images"),
    ],
)
def test_bad_npz_batches(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(EvalInputError, match=message):
        scan(tmp_path / "bad.npz")


def test_neither_folder_nor_npz(tmp_path):
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(EvalInputError, match="neither a folder"):
        scan(tmp_path / "x.png")
    with pytest.raises(EvalInputError, match="does not exist"):
        scan(tmp_path / "missing")
    (tmp_path / "broken.npz").write_bytes(b"garbage")
    with pytest.raises(EvalInputError, match="not a readable .npz"):
        scan(tmp_path / "broken.npz")
