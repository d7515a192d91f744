import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from helpers.shared import PROJECT_ROOT
from helpers.train_data import tiny_config, write_flat_split

from hfan import build_model, load_model
from hfan.io.images import read_image
from hfan.datasets.layouts import FlatLayout
from hfan.inference.predictor import Predictor
from hfan.models.checkpoints import read_checkpoint_file
from hfan.train.distributed import SYNC_BN_MODULE, sync_linear_fuse_bn
from hfan.train.loop import train

WORLD_SIZE = 2
SOURCE_ROOT = PROJECT_ROOT / "src"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _train_rank(rank: int, port: int, data_root: str, work_dir: str, out_dir: str) -> None:
    """What torchrun sets up for each process, then the library's train()."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    result = train(tiny_config(data_root, "iterations=3"), work_dir, device="cpu", progress=False)
    torch.save({name: p.detach().clone() for name, p in result.model.named_parameters()},
               os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.mark.slow
def test_two_gloo_ranks_end_with_identical_weights_and_a_usable_checkpoint(tmp_path):
    data_root = tmp_path / "data"
    write_flat_split(data_root, videos=2, frames=4)
    mp.spawn(_train_rank, args=(_free_port(), str(data_root), str(tmp_path / "run"), str(tmp_path)),
             nprocs=WORLD_SIZE, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD_SIZE)]
    assert ranks[0].keys() == ranks[1].keys()
    for name in ranks[0]:
        assert torch.equal(ranks[0][name], ranks[1][name]), name

    checkpoint = tmp_path / "run" / "iter_3.pth"
    state = read_checkpoint_file(checkpoint)
    assert len(state["rng_states"]) == WORLD_SIZE and state["samples_per_step"] == 4  # 2 ranks x 2
    untrained = build_model("hfan-b0")
    model = load_model(checkpoint)  # what `hfan infer --checkpoint` will do
    assert not torch.equal(model.backbone.patch_embed1.proj.weight, untrained.backbone.patch_embed1.proj.weight)
    for name, value in ranks[0].items():
        assert torch.equal(model.state_dict()[name], value), name  # rank 0 saved the trained weights

    layout = FlatLayout(data_root)
    frames = [read_image(layout.frame_path("train", "video0", i)) for i in range(2)]
    flows = [read_image(layout.flow_path("train", "video0", i)) for i in range(2)]
    predictions = Predictor(model).predict(frames, flows)
    assert [p.mask.shape for p in predictions] == [(48, 64)] * 2
    assert all(p.mask.dtype == bool and np.all((p.probability >= 0) & (p.probability <= 1)) for p in predictions)


def test_only_linear_fuse_bn_is_synchronised():
    model = build_model("hfan-small")
    sync_linear_fuse_bn(model)
    synchronised = [name for name, m in model.named_modules() if isinstance(m, torch.nn.SyncBatchNorm)]
    assert synchronised == [SYNC_BN_MODULE]
    plain = [name for name, m in model.named_modules() if type(m) is torch.nn.BatchNorm2d]
    assert plain and all(name.startswith("decode_head.hfan") for name in plain)  # the HFAN blocks' BNs
    assert set(model.state_dict()) == set(build_model("hfan-small").state_dict())  # checkpoints unchanged


@pytest.mark.slow
def test_torchrun_launches_the_training_module(tmp_path):
    write_flat_split(tmp_path / "data", videos=2, frames=3)
    options = [f"data.root={tmp_path / 'data'}", "data.val_root=none", "data.batch_per_gpu=2",
               "data.workers_per_gpu=0", "data.augment.crop_size=64,64", "data.augment.img_scale=128,64",
               "iterations=2", "tensorboard=false"]
    python_path = os.pathsep.join(filter(None, [str(SOURCE_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": python_path, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD_SIZE}",
         "-m", "hfan.train", "hfan-b0-160k", "--work-dir", str(tmp_path / "run"), "--device", "cpu",
         "--no-progress", "--options", *options],
        env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.count("iteration 2:") == 1  # printed by rank 0 only
    assert read_checkpoint_file(tmp_path / "run" / "iter_2.pth")["samples_per_step"] == 2 * WORLD_SIZE
