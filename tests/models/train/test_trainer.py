"""The training loop on the CPU: it learns, it exports a pipeline that generates, SIGTERM checkpoints, and a resumed
run repeats an uninterrupted one step for step (fp32)."""

import os
import signal

import pytest
import torch
from safetensors.torch import load_file

from models import load_pipeline
from models.errors import RunFolderError, TrainingConfigError
from models.eval.geneval.prompts import TAGS
from models.eval.geneval.rules import RELATIONS
from models.network.transformer import LinaTransformer
from models.train.checkpoint import EMA_NAME, MODEL_NAME, latest_checkpoint
from models.train.data import open_source
from models.train.export import export
from models.train.latents import latent_cache_path
from models.train.prepare import BatchOrder, prepare_data
from models.train.progress import read_log
from models.train.run import plan_run, start_run
from models.train.signals import TIME_LIMIT
from models.train.trainer import Trainer, train
from tests.models.train.conftest import TINY_RUN


def test_training_lowers_the_loss_and_exports_a_pipeline_that_generates(tiny_parts, tmp_path):
    recipe = {**TINY_RUN, "steps": 80, "lr": 1e-2, "warmup": 5, "batch_size": 8, "dataset_size": 32, "checkpoint_every": 80}
    result = train(tmp_path / "run", plan_run(recipe, parts=tiny_parts, geometry="tiny"), device="cpu")
    assert (result.step, result.interrupted_by) == (80, None)
    log = read_log(tmp_path / "run")
    assert [line["step"] for line in log] == list(range(1, 81))
    losses = [line["loss"] for line in log]
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 0.08
    assert log[0]["lr"] == pytest.approx(1e-2 * (0.2 + 0.8 * 0.001)) and log[-1]["lr"] == pytest.approx(1e-2)
    assert all(line["images_per_second"] > 0 and line["mfu"] is None for line in log)

    folder = export(tmp_path / "run", tmp_path / "exported", dtype="fp16")
    assert load_file(str(folder / "transformer" / "diffusion_pytorch_model.safetensors"))["mask_embed.mask_token"].dtype == torch.float16
    pipe = load_pipeline(folder, device="cpu")
    ema = load_file(str(latest_checkpoint(tmp_path / "run") / EMA_NAME))
    torch.testing.assert_close(pipe.transformer.state_dict()["mask_embed.mask_token"], ema["mask_embed.mask_token"].half().float())
    output = pipe("a photo of a red circle", seed=0, ar_steps=2, diffusion_steps=2)
    assert output.images[0].size == (32, 32)


def test_sigterm_checkpoints_and_resume_repeats_the_uninterrupted_run(tiny_parts, tmp_path):
    spec = plan_run(dict(TINY_RUN), parts=tiny_parts, geometry="tiny")
    whole = train(tmp_path / "whole", spec, device="cpu")
    assert whole.step == 6

    def terminate_at_first_step(progress):
        if progress.step == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # a real signal: the handler records it, the loop stops after step 2

    stopped = train(tmp_path / "split", spec, device="cpu", on_log=terminate_at_first_step)
    assert (stopped.step, stopped.interrupted_by) == (2, "SIGTERM")
    assert stopped.checkpoint.name == "step-00000002"  # not a --checkpoint-every step: the signal wrote it
    assert signal.getsignal(signal.SIGTERM) is not None  # handlers restored

    with pytest.raises(RunFolderError, match="already holds a training run"):
        train(tmp_path / "split", spec, device="cpu")
    with pytest.raises(TrainingConfigError, match="lr"):
        train(tmp_path / "split", resume=True, changes={"lr": 1.0}, device="cpu")
    resumed = train(tmp_path / "split", resume=True, device="cpu")
    assert resumed.step == 6

    def losses(run):
        return [(line["step"], line["loss"], line["lr"], line["grad_norm"]) for line in read_log(tmp_path / run)]

    assert losses("split") == losses("whole")  # exactly: same numbers in the same order
    for name in (MODEL_NAME, EMA_NAME):
        a = load_file(str(latest_checkpoint(tmp_path / "whole") / name))
        b = load_file(str(latest_checkpoint(tmp_path / "split") / name))
        assert all(torch.equal(a[key], b[key]) for key in a), name


def test_resume_can_extend_a_run(tiny_parts, tmp_path):
    spec = plan_run({**TINY_RUN, "steps": 2, "checkpoint_every": 2}, parts=tiny_parts, geometry="tiny")
    train(tmp_path / "run", spec, device="cpu")
    result = train(tmp_path / "run", resume=True, changes={"steps": 3}, device="cpu")
    assert result.step == 3 and [line["step"] for line in read_log(tmp_path / "run")] == [1, 2, 3]



def test_a_cooldown_added_on_resume_trains_as_one_planned_from_the_start(tiny_parts, tmp_path):
    planned = train(tmp_path / "planned", plan_run({**TINY_RUN, "cooldown": 3}, parts=tiny_parts, geometry="tiny"),
                    device="cpu")
    lrs = [line["lr"] for line in read_log(tmp_path / "planned")]
    assert planned.step == 6 and lrs[2:] == pytest.approx([TINY_RUN["lr"] * f for f in (1, 1, 2 / 3, 1 / 3)])

    # the same run without a cool-down, stopped at its step-3 checkpoint, then resumed with --cooldown 3
    spec = plan_run({**TINY_RUN, "steps": 3}, parts=tiny_parts, geometry="tiny")
    train(tmp_path / "late", spec, device="cpu")
    train(tmp_path / "late", resume=True, changes={"steps": 6, "cooldown": 3}, device="cpu")

    def losses(run):
        return [(line["step"], line["loss"], line["lr"]) for line in read_log(tmp_path / run)]

    assert losses("late") == losses("planned")

def test_batches_walk_seeded_epochs():
    order = BatchOrder(num_images=5, batch_size=3, seed=7)
    batches = [order.batch(step).tolist() for step in range(5)]
    stream = [i for batch in batches for i in batch]
    assert sorted(stream[:5]) == list(range(5)) and sorted(stream[5:10]) == list(range(5))
    assert stream[:5] != stream[5:10]  # a new permutation each epoch
    assert [BatchOrder(5, 3, 7).batch(step).tolist() for step in (4, 0)] == [batches[4], batches[0]]
    assert BatchOrder(5, 3, 8).batch(0).tolist() != batches[0]


@pytest.mark.parametrize("attention", ["linear", "softmax"])
def test_bf16_autocast_steps_run_as_on_cuda(tiny_parts, tmp_path, attention):
    # CUDA runs train under bf16 autocast; the CPU's autocast exercises the same dtype paths (float32 attention core,
    # float32 rows scattered into the bf16 canvas).
    spec = plan_run({**TINY_RUN, "steps": 2, "dtype": "bf16"}, parts=tiny_parts, geometry="tiny", attention=attention)
    result = train(tmp_path / "run", spec, device="cpu")
    assert result.step == 2 and all(torch.isfinite(torch.tensor(line["loss"])) for line in read_log(tmp_path / "run"))


def test_a_time_limit_stops_with_a_checkpoint(tiny_parts, tmp_path):
    result = train(tmp_path / "run", plan_run(dict(TINY_RUN), parts=tiny_parts, geometry="tiny"), device="cpu",
                   time_limit=0.0)
    assert (result.step, result.interrupted_by) == (1, TIME_LIMIT)
    assert result.checkpoint == latest_checkpoint(tmp_path / "run") and result.checkpoint.name == "step-00000001"


def test_init_from_starts_at_the_pipeline_weights_with_its_parts(tiny_parts, tmp_path):
    train(tmp_path / "first", plan_run({**TINY_RUN, "steps": 2}, parts=tiny_parts, geometry="tiny"), device="cpu")
    pipeline = export(tmp_path / "first", tmp_path / "pipeline", ema=False)
    with pytest.raises(TrainingConfigError, match="keeps the model's geometry"):
        plan_run({}, init_from=str(pipeline), geometry="tiny")
    with pytest.raises(TrainingConfigError, match="is a t2i model of 32 px"):
        plan_run({"image_size": 64}, init_from=str(pipeline))

    spec = plan_run({"dataset_size": 16, "batch_size": 4}, init_from=str(pipeline))
    assert spec.recipe.image_size == 32 and spec.components.vae == (pipeline / "vae").resolve()
    start_run(tmp_path / "tuned", spec)
    data = prepare_data(tmp_path / "tuned", spec, torch.device("cpu"), builds=True, compute_dtype=torch.float32)
    trainer = Trainer(tmp_path / "tuned", spec, data, torch.device("cpu"))
    released = LinaTransformer.from_pretrained(pipeline / "transformer").state_dict()
    assert all(torch.equal(trainer.model.state_dict()[key], value) for key, value in released.items())
    assert trainer.model.image_decoder.head.weight.requires_grad and not trainer.model.video_pos_embed.norm.weight.requires_grad


def test_a_shapes_mix_is_recorded_and_names_its_own_latent_cache(tiny_parts, tmp_path):
    for mix, message in (({"spatial": 2.0}, "shapes_mix tasks"), ({"position": -1.0}, "must be ≥ 0")):
        with pytest.raises(TrainingConfigError, match=message):
            plan_run({**TINY_RUN, "shapes_mix": mix}, parts=tiny_parts, geometry="tiny")
    mix = {tag: float(tag == "position") for tag in TAGS}
    spec = plan_run({**TINY_RUN, "dataset_size": 6, "shapes_mix": mix}, parts=tiny_parts, geometry="tiny")
    start_run(tmp_path / "run", spec)
    data = prepare_data(tmp_path / "run", spec, torch.device("cpu"), builds=True, compute_dtype=torch.float32)
    # every caption relates a subject to a target: "a photo of <subject> <relation> <target>"
    assert all(any(relation in caption for relation in RELATIONS) for caption in data.latents.captions)
    plain = plan_run({**TINY_RUN, "dataset_size": 6}, parts=tiny_parts, geometry="tiny")
    assert latent_cache_path(tmp_path, open_source("shapes", task="t2i", size=32, dataset_size=6, shapes_mix=mix),
                             plain.components.vae) != latent_cache_path(
        tmp_path, open_source("shapes", task="t2i", size=32, dataset_size=6), plain.components.vae)


def test_relation_weights_reach_the_cached_captions_and_name_their_own_cache(tiny_parts, tmp_path):
    with pytest.raises(TrainingConfigError, match=r"shapes_relations relations \['sideways'\]"):
        plan_run({**TINY_RUN, "shapes_relations": {"sideways": 1.0}}, parts=tiny_parts, geometry="tiny")
    mix, relations = {tag: float(tag == "position") for tag in TAGS}, {"above": 0.0, "below": 0.0}
    values = {**TINY_RUN, "dataset_size": 8, "shapes_mix": mix, "shapes_relations": relations}
    spec = plan_run(values, parts=tiny_parts, geometry="tiny")
    start_run(tmp_path / "run", spec)
    data = prepare_data(tmp_path / "run", spec, torch.device("cpu"), builds=True, compute_dtype=torch.float32)
    assert all(" left of " in caption or " right of " in caption for caption in data.latents.captions)
    weighted = open_source("shapes", task="t2i", size=32, dataset_size=8, shapes_mix=mix, shapes_relations=relations)
    unweighted = open_source("shapes", task="t2i", size=32, dataset_size=8, shapes_mix=mix)
    vae = spec.components.vae
    assert latent_cache_path(tmp_path, weighted, vae) != latent_cache_path(tmp_path, unweighted, vae)


@pytest.mark.slow
def test_compiled_blocks_train_like_eager_ones_and_save_the_same_keys(tiny_parts, tmp_path):
    # torch.compile (inductor, here its CPU backend) fuses each block; the arithmetic is the same up to rounding,
    # the known-token count changes between steps (a dynamic dimension), and checkpoints keep their names.
    spec = plan_run({**TINY_RUN, "steps": 4}, parts=tiny_parts, geometry="tiny")
    train(tmp_path / "eager", spec, device="cpu")
    train(tmp_path / "compiled", spec, device="cpu", compile_blocks=True)
    eager, compiled = read_log(tmp_path / "eager"), read_log(tmp_path / "compiled")
    assert len({line["loss"] for line in eager}) == 4  # four different batches, mask ratios and noise draws
    torch.testing.assert_close([line["loss"] for line in compiled], [line["loss"] for line in eager], rtol=1e-4, atol=1e-5)
    a = load_file(str(latest_checkpoint(tmp_path / "eager") / MODEL_NAME))
    b = load_file(str(latest_checkpoint(tmp_path / "compiled") / MODEL_NAME))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-3, atol=1e-4)


def test_the_bundled_model_fine_tunes_from_its_alias(tmp_path):
    # `--init-from lina-shapes`: the shipped folder's weights, geometry and parts, through the same resolution as
    # `lina generate -m lina-shapes`; two steps on eight fresh shapes images.
    spec = plan_run({"dataset_size": 8, "batch_size": 4, "steps": 2, "warmup": 1, "lr": 1e-5}, init_from="lina-shapes")
    assert (spec.recipe.task, spec.recipe.image_size, spec.transformer.attention) == ("t2i", 128, "linear")
    result = train(tmp_path / "tuned", spec, device="cpu")
    assert result.step == 2 and all(torch.isfinite(torch.tensor(line["loss"])) for line in read_log(tmp_path / "tuned"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="host-device synchronisation exists only with a GPU")
def test_cuda_steps_never_make_the_host_wait_for_the_gpu(tiny_parts, tmp_path):
    # A synchronisation per step (a pageable copy, a table built on the host) makes the host wait while the GPU
    # drains its queue, so the host's dispatch time adds to the GPU's instead of overlapping it.
    spec = plan_run({**TINY_RUN, "steps": 4}, parts=tiny_parts, geometry="tiny")
    start_run(tmp_path / "run", spec)
    device = torch.device("cuda")
    data = prepare_data(tmp_path / "run", spec, device, builds=True, compute_dtype=torch.bfloat16)
    trainer = Trainer(tmp_path / "run", spec, data, device)
    trainer.train_step()  # the first step copies the constant tables once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            trainer.train_step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
