"""`lina download imagenet-ref|imagenet-512-ref|geneval`: evaluation files in the lina cache, without the network."""

import json

import pytest

from models.eval.downloads import GENEVAL_METADATA_URL, geneval_metadata_path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LINA_CACHE", str(tmp_path / "lina-cache"))
    return tmp_path / "lina-cache"


def test_a_cached_file_is_found_offline(lina, cache):
    path = geneval_metadata_path()
    path.parent.mkdir(parents=True)
    path.write_text('{"tag": "single_object", "include": [{"class": "cat", "count": 1}], "prompt": "a photo of a cat"}\n')
    result = lina("download", "geneval", "--offline", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"name": "geneval", "path": str(path)}


@pytest.mark.parametrize(("name", "url_part"), [
    ("geneval", GENEVAL_METADATA_URL), ("imagenet-ref", "256/VIRTUAL_imagenet256_labeled.npz"),
    ("imagenet-512-ref", "512/VIRTUAL_imagenet512.npz"),
])
def test_offline_without_the_file_says_where_to_get_it_and_where_to_put_it(lina, cache, name, url_part):
    result = lina("download", name, "--offline")
    assert result.exit_code == 1
    error = result.stderr.splitlines()[-2]
    assert url_part in error and str(cache) in error


def test_geneval_run_without_metadata_fetches_genevals_prompts(lina, cache, tiny_t2i_folder):
    result = lina("eval", "geneval", "run", "-m", tiny_t2i_folder, "--offline", "--device", "cpu")
    assert result.exit_code == 1
    assert GENEVAL_METADATA_URL in result.stderr and "--metadata" in result.stderr
