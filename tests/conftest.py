"""Shared fixtures: tiny real pipeline folders, written once per test session with our own save_pretrained."""

import pytest


@pytest.fixture(scope="session")
def tiny_c2i_folder(tmp_path_factory):
    from tests.factories import make_tiny_pipeline

    return make_tiny_pipeline(tmp_path_factory.mktemp("tiny-c2i"), task="c2i")


@pytest.fixture(scope="session")
def tiny_t2i_folder(tmp_path_factory):
    from tests.factories import make_tiny_pipeline

    return make_tiny_pipeline(tmp_path_factory.mktemp("tiny-t2i"), task="t2i")


@pytest.fixture(scope="session")
def tiny_c2i_softmax_folder(tmp_path_factory):
    from tests.factories import make_tiny_pipeline

    return make_tiny_pipeline(tmp_path_factory.mktemp("tiny-c2i-softmax"), task="c2i", attention="softmax")
