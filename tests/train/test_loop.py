import csv
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from helpers.train_data import tiny_config, write_flat_split
from hfan import build_model, save_checkpoint
from hfan.cli import main as hfan_main
from hfan.config import SELECT_METHODS, AugmentConfig, TrainConfig, apply_overrides
from hfan.datasets.train_dataset import FlatTrainDataset
from hfan.datasets.transforms import TrainTransform
from hfan.models.checkpoints import read_checkpoint_file
from hfan.train.checkpointing import LATEST
from hfan.train.loop import accumulate_gradients, launch, segmentation_loss, train
from hfan.train.optim import lr_at
from hfan.presets import get_preset
from hfan.train.sampler import TrainStream


def test_loss_is_summed_over_labelled_pixels_and_divided_by_all_pixels():
    torch.manual_seed(1)
    logits = torch.randn(2, 2, 4, 4)
    target = torch.randint(0, 2, (2, 16, 16))
    target[0, :4] = 255  # 64 ignored pixels of 512
    upsampled = F.interpolate(logits, size=(16, 16), mode="bilinear", align_corners=False)
    log_probs = upsampled.log_softmax(dim=1)
    labelled = target != 255
    picked = log_probs.gather(1, target.clamp(max=1).unsqueeze(1)).squeeze(1)
    expected = -(picked * labelled).sum() / target.numel()
    loss = segmentation_loss(logits, target)
    torch.testing.assert_close(loss, expected)
    # not the mean over labelled pixels only
    assert not torch.isclose(loss, -(picked[labelled]).mean())


def test_jaccard_term_adds_one_minus_the_soft_overlap_of_the_labelled_foreground():
    torch.manual_seed(2)
    logits = torch.randn(2, 2, 4, 4)
    target = torch.randint(0, 2, (2, 16, 16))
    target[1, :, :5] = 255
    cross_entropy = segmentation_loss(logits, target)
    assert torch.equal(segmentation_loss(logits, target, jaccard_weight=0.0), cross_entropy)
    probability = F.interpolate(logits, size=(16, 16), mode="bilinear", align_corners=False).softmax(1)[:, 1]
    expected = []
    for image in range(2):
        labelled = target[image] != 255
        p, y = probability[image][labelled], (target[image][labelled] == 1).float()
        overlap = (p * y).sum()
        expected.append(1 - (overlap + 1) / (p.sum() + y.sum() - overlap + 1))
    torch.testing.assert_close(segmentation_loss(logits, target, jaccard_weight=0.5),
                               cross_entropy + 0.5 * torch.stack(expected).mean())
    # a confident, correct prediction leaves (nearly) nothing of the term
    sure = torch.stack([(target != 1).float(), (target == 1).float()], 1) * 40 - 20
    assert segmentation_loss(sure, target, jaccard_weight=1.0) < 1e-6
    with pytest.raises(ValueError, match="jaccard_loss_weight"):
        TrainConfig(jaccard_loss_weight=-1.0).validate()


@pytest.mark.parametrize("select_method", SELECT_METHODS)
def test_every_parameter_gets_a_gradient(select_method):
    """Why DDP runs with find_unused_parameters=False."""
    model = build_model(apply_overrides(get_preset("hfan-b0"), [f"decode_head.select_method={select_method}"]))
    logits = model.train()(torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32))
    segmentation_loss(logits, torch.randint(0, 2, (2, 32, 32))).backward()
    assert [name for name, p in model.named_parameters() if p.grad is None] == []


def test_stream_covers_every_item_once_per_epoch_across_ranks_and_micro_batches():
    ranks = [TrainStream(10, batch_per_rank=2, accumulate=2, rank=r, world_size=2, seed=5) for r in range(2)]
    assert ranks[0].samples_per_step == 8
    keys = [ranks[r].key(p) for step in range(5) for r in range(2) for p in ranks[r].positions(step)]
    assert len(keys) == 40
    for epoch in range(4):  # every epoch a permutation, epochs cut inside batches
        assert sorted(i for i, e in keys if e == epoch) == list(range(10))
    assert [i for i, e in keys if e == 0] != list(range(10))  # shuffled


def test_stream_gives_one_gpu_with_accumulation_the_samples_of_two_gpus():
    two_gpus = [TrainStream(50, batch_per_rank=4, rank=r, world_size=2) for r in range(2)]
    one_gpu = TrainStream(50, batch_per_rank=2, accumulate=4)
    for step in range(20):
        shared = sorted(p for stream in two_gpus for p in stream.positions(step))
        assert sorted(one_gpu.positions(step)) == shared


def test_stream_resumes_at_a_step():
    whole = iter(TrainStream(7, batch_per_rank=3, seed=2))
    keys = [next(whole) for _ in range(30)]
    resumed = iter(TrainStream(7, batch_per_rank=3, seed=2, start_step=4))
    assert [next(resumed) for _ in range(18)] == keys[12:]


@pytest.mark.parametrize("jaccard_weight", [0.0, 0.5])
def test_accumulated_gradients_equal_those_of_the_whole_batch(tmp_path, jaccard_weight):
    """1 x batch 4 and 2 micro-batches x 2 give the same gradients when samples do not interact: dropout and
    stochastic depth off, BatchNorm on its running statistics (in training, BN couples a batch's samples). The
    Jaccard term is per image, so it accumulates the same way."""
    write_flat_split(tmp_path, videos=1, frames=4)
    dataset = FlatTrainDataset(tmp_path, "train", TrainTransform(AugmentConfig(crop_size=(64, 64),
                                                                               img_scale=(128, 64))))
    samples = [dataset[i] for i in range(4)]

    def batch(items):
        return {key: torch.stack([item[key] for item in items]) for key in items[0]}

    model = build_model(apply_overrides(get_preset("hfan-b0"), ["backbone.drop_path_rate=0", "decode_head.dropout=0"]))
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eval()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    gradients = []
    for micro_batches in ([batch(samples)], [batch(samples[:2]), batch(samples[2:])]):
        model.zero_grad()
        loss = accumulate_gradients(model, iter(micro_batches), len(micro_batches), scaler, torch.device("cpu"), "fp32",
                                    jaccard_weight=jaccard_weight)
        gradients.append((loss, [p.grad.clone() for p in model.parameters()]))
    (loss_whole, whole), (loss_accumulated, accumulated) = gradients
    torch.testing.assert_close(loss_accumulated, loss_whole)
    whole_batch = batch(samples)
    with torch.no_grad():
        logits = model(whole_batch["frame"], whole_batch["flow"])
    torch.testing.assert_close(loss_whole, segmentation_loss(logits, whole_batch["mask"], jaccard_weight=jaccard_weight))
    for a, b in zip(accumulated, whole):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def _read_csv(path):
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_resume_continues_bit_identically(tmp_path, workers):
    """4 iterations in one go, and the same run continued from its checkpoint at iteration 2 (the files an
    interrupted run leaves) give bit-identical weights and the same logged losses."""
    write_flat_split(tmp_path / "data", videos=2, frames=3)
    config = tiny_config(tmp_path / "data", f"data.workers_per_gpu={workers}")
    straight = train(config, tmp_path / "straight", device="cpu", progress=False)
    assert straight.iteration == 4 and straight.checkpoint.name == "iter_4.pth"
    assert (tmp_path / "straight" / LATEST).resolve().name == "iter_4.pth"

    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    for name in ("iter_2.pth", "train_log.csv"):
        shutil.copy(tmp_path / "straight" / name, interrupted / name)
    state = read_checkpoint_file(interrupted / "iter_2.pth")
    assert state["iteration"] == 2 and len(state["rng_states"]) == 1 and state["samples_per_step"] == 2
    resumed = launch(None, interrupted, resume=str(interrupted / "iter_2.pth"), device="cpu", progress=False)
    assert resumed.iteration == 4
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    straight_log, resumed_log = (_read_csv(tmp_path / run / "train_log.csv") for run in ("straight", "interrupted"))
    assert [row["iteration"] for row in resumed_log] == ["1", "2", "3", "4"]
    assert [row["loss"] for row in resumed_log] == [row["loss"] for row in straight_log]
    assert (interrupted / LATEST).resolve().name == "iter_4.pth"


@pytest.mark.slow
def test_logs_hold_loss_learning_rates_speed_and_validation(tmp_path):
    write_flat_split(tmp_path / "data", videos=2, frames=3)
    write_flat_split(tmp_path / "data", "val", videos=2, frames=4, seed=1)
    config = tiny_config(tmp_path / "data", f"data.val_root={tmp_path / 'data'}", "iterations=3",
                         "eval_interval=3", "tensorboard=true")
    result = train(config, tmp_path / "run", device="cpu", progress=False)
    rows = _read_csv(tmp_path / "run" / "train_log.csv")
    assert [int(row["iteration"]) for row in rows] == [1, 2, 3]
    rules = {"default": 1.0, "norm": 1.0, "head": 10.0}
    for row in rows:
        assert float(row["loss"]) > 0 and float(row["seconds_per_iter"]) > 0
        assert float(row["images_per_s"]) == pytest.approx(2 / float(row["seconds_per_iter"]), rel=1e-3)
        for group, mult in rules.items():  # the rate each group trained with at that iteration
            expected = lr_at(int(row["iteration"]) - 1, config.optimizer.lr * mult, config.schedule, 3)
            assert float(row[f"lr_{group}"]) == pytest.approx(expected, rel=1e-5)
    validation = _read_csv(tmp_path / "run" / "val_log.csv")
    assert [row["iteration"] for row in validation] == ["3"]
    assert validation[0]["J-Mean"] == f"{result.validation['J-Mean']:.6g}"
    assert 0 <= result.validation["J-Mean"] <= 1 and 0 <= result.validation["F-Mean"] <= 1
    assert result.validation["J&F-Mean"] == pytest.approx((result.validation["J-Mean"] + result.validation["F-Mean"]) / 2)
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_bad_data_is_reported_at_start_up_with_the_file_names(tmp_path, capsys):
    layout = write_flat_split(tmp_path / "data", videos=1, frames=3)
    bad_flow = layout.flow_path("train", "video0", 1)
    Image.fromarray(np.zeros((40, 64, 3), np.uint8)).save(bad_flow)
    options = ["--options", f"data.root={tmp_path / 'data'}", "data.val_root=none"]
    assert hfan_main(["train", "hfan-b0-160k", "--work-dir", str(tmp_path / "run"), "--device", "cpu", *options]) == 2
    error = capsys.readouterr().err
    assert "size mismatch" in error and str(bad_flow) in error and "64x40" in error
    assert str(bad_flow) in (tmp_path / "run" / "data_problems.txt").read_text()
    assert not list((tmp_path / "run").glob("*.pth"))

    layout.mask_path("train", "video0", 2).unlink()
    assert hfan_main(["train", "hfan-b0-160k", "--work-dir", str(tmp_path / "run"), "--device", "cpu", *options]) == 2
    assert str(layout.mask_path("train", "video0", 2)) in capsys.readouterr().err

    write_flat_split(tmp_path / "data", videos=1, frames=3)  # repaired: the run starts, the old list goes
    assert hfan_main(["train", "hfan-b0-160k", "--work-dir", str(tmp_path / "run"), "--device", "cpu", "--no-progress",
                      *options, "iterations=1", "tensorboard=false", "data.batch_per_gpu=2", "data.workers_per_gpu=0",
                      "data.augment.crop_size=64,64", "data.augment.img_scale=128,64"]) == 0
    assert not (tmp_path / "run" / "data_problems.txt").exists() and (tmp_path / "run" / "iter_1.pth").exists()


def test_validation_split_is_checked_at_start_up(tmp_path):
    write_flat_split(tmp_path / "data", videos=1, frames=3)
    layout = write_flat_split(tmp_path / "data", "val", videos=1, frames=3)
    layout.mask_path("val", "video0", 1).unlink()
    with pytest.raises(FileNotFoundError, match="video0_00001.png"):
        train(tiny_config(tmp_path / "data", f"data.val_root={tmp_path / 'data'}"), tmp_path / "run", device="cpu")
    assert not list((tmp_path / "run").glob("*.pth"))


def test_load_from_starts_from_the_given_weights(tmp_path):
    write_flat_split(tmp_path / "data", videos=1, frames=3)
    config = tiny_config(tmp_path / "data", "iterations=1", preset="hfan-b0-refine")
    torch.manual_seed(7)
    source = build_model(config.model)
    save_checkpoint(tmp_path / "stage1.pth", source, config.model)
    config.load_from = str(tmp_path / "stage1.pth")
    result = train(config, tmp_path / "run", device="cpu", progress=False)
    # one AdamW step at 1e-5 (head 1e-4) moves a weight by about the learning rate
    for (name, trained), start in zip(result.model.state_dict().items(), source.state_dict().values()):
        if trained.is_floating_point() and "running" not in name:
            torch.testing.assert_close(trained, start, atol=2e-4, rtol=0, msg=name)
    assert not torch.equal(result.model.decode_head.linear_pred.weight, source.decode_head.linear_pred.weight)

    config.load_from = None
    config.pretrained = str(tmp_path / "stage1.pth")  # not an ImageNet backbone file
    with pytest.raises(ValueError, match="does not match the model"):
        train(config, tmp_path / "run2", device="cpu", progress=False)


def test_resume_refuses_weights_only_files_and_another_global_batch(tmp_path):
    write_flat_split(tmp_path / "data", videos=1, frames=3)
    config = tiny_config(tmp_path / "data", "iterations=1")
    save_checkpoint(tmp_path / "weights.pth", build_model(config.model), config.model)
    with pytest.raises(ValueError, match="use --load-from"):
        launch(None, tmp_path / "run", resume=str(tmp_path / "weights.pth"), device="cpu")
    with pytest.raises(ValueError, match="give no preset"):
        launch("hfan-b0-160k", tmp_path / "run", resume=str(tmp_path / "weights.pth"), device="cpu")
    train(config, tmp_path / "run", device="cpu", progress=False)
    with pytest.raises(ValueError, match="nothing left to do"):
        launch(None, tmp_path / "run2", resume=str(tmp_path / "run"), device="cpu")
    with pytest.raises(ValueError, match="2 samples per step but this run has 4"):
        launch(None, tmp_path / "run2", resume=str(tmp_path / "run"), device="cpu",
               options=["iterations=2", "grad_accum_steps=2"])


@pytest.mark.slow
# The scaler skips the first step (inf gradients at its initial scale), and torch warns that the scheduler moved.
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")
def test_fp16_autocast_trains_with_a_gradient_scaler_that_is_checkpointed(tmp_path):
    write_flat_split(tmp_path / "data", videos=1, frames=3)
    result = train(tiny_config(tmp_path / "data", "iterations=2", "precision=fp16"), tmp_path / "run",
                   device="cpu", progress=False)
    scaler = read_checkpoint_file(result.checkpoint)["scaler"]
    assert scaler["scale"] > 1  # an active scaler (fp32/bf16 keep an empty state)
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


@pytest.mark.slow
def test_weight_average_follows_its_rule_resumes_and_leaves_training_unchanged(tmp_path):
    """ema_decay=d: after every step ema = d * ema + (1 - d) * weights (the first step copies them), kept in
    the checkpoints so that a resumed run continues it exactly; validated as "ema ..." columns with its own
    best_ema.pth; the trained weights are those of the same run without it."""
    write_flat_split(tmp_path / "data", videos=2, frames=3)
    write_flat_split(tmp_path / "data", "val", videos=2, frames=4, seed=1)
    common = (f"data.val_root={tmp_path / 'data'}", "iterations=3", "checkpoint_interval=1", "eval_interval=3",
              "keep_best=J-Mean")
    plain = train(tiny_config(tmp_path / "data", *common), tmp_path / "plain", device="cpu", progress=False)
    averaged = train(tiny_config(tmp_path / "data", *common, "ema_decay=0.5"), tmp_path / "ema", device="cpu",
                     progress=False)
    for (name, a), b in zip(plain.model.state_dict().items(), averaged.model.state_dict().values()):
        assert torch.equal(a, b), name

    weights = [read_checkpoint_file(tmp_path / "ema" / f"iter_{i}.pth")["state_dict"] for i in (1, 2, 3)]
    ema = read_checkpoint_file(tmp_path / "ema" / "iter_3.pth")["ema"]
    assert int(ema["n_averaged"]) == 3
    compared = 0
    for name, first in weights[0].items():
        if not first.is_floating_point():
            continue
        expected = (first * 0.5 + weights[1][name] * 0.5) * 0.5 + weights[2][name] * 0.5
        torch.testing.assert_close(ema[f"module.{name}"], expected, rtol=1e-5, atol=1e-6)
        compared += 1
    assert compared > 100
    assert not torch.equal(ema["module.decode_head.linear_pred.weight"], weights[2]["decode_head.linear_pred.weight"])

    validation = _read_csv(tmp_path / "ema" / "val_log.csv")
    assert validation[0]["ema J-Mean"] == f"{averaged.validation['ema J-Mean']:.6g}"
    best_ema = read_checkpoint_file(tmp_path / "ema" / "best_ema.pth")
    assert best_ema["selected_by"] == "ema J-Mean" and best_ema["iteration"] == 3
    for name, value in best_ema["state_dict"].items():
        assert torch.equal(value, ema[f"module.{name}"]), name
    assert not (tmp_path / "plain" / "best_ema.pth").exists()

    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    shutil.copy(tmp_path / "ema" / "iter_2.pth", interrupted / "iter_2.pth")
    launch(None, interrupted, resume=str(interrupted / "iter_2.pth"), device="cpu", progress=False)
    resumed = read_checkpoint_file(interrupted / "iter_3.pth")["ema"]
    for name, value in ema.items():
        assert torch.equal(value, resumed[name]), name
    with pytest.raises(ValueError, match="holds no weight average"):
        launch(None, tmp_path / "plain", resume=str(tmp_path / "plain" / "iter_2.pth"), device="cpu",
               progress=False, options=["ema_decay=0.5"])
