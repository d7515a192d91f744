"""`hfan info`: what is installed and which models exist."""
from __future__ import annotations

import platform


def describe() -> str:
    import torch

    import hfan
    from hfan.presets import MODEL_PRESETS

    lines = [
        f"hfan {hfan.__version__}",
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"CUDA build {torch.version.cuda or 'none'}, CUDA available: {torch.cuda.is_available()}",
    ]
    if torch.cuda.is_available():
        lines += [f"  cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    lines.append(f"CPU threads: {torch.get_num_threads()}")
    lines.append("model presets:")
    for name, record in MODEL_PRESETS.items():
        cfg = record.config
        lines.append(
            f"  {name:12s} backbone {cfg.backbone.name}, decoder width {cfg.decode_head.embed_dim}, "
            f"select_method {cfg.decode_head.select_method}"
        )
    from hfan.models.checkpoints import model_card
    from hfan.presets import default_weights_path

    weights = default_weights_path()
    if weights.is_file():
        card = model_card(weights)
        lines.append(f"default model (hfan segment without --checkpoint): {card.get('name', 'hfan-default')}, "
                     f"{weights} ({weights.stat().st_size / 1e6:.1f} MB)")
    else:
        lines.append(f"default model: missing ({weights} is not in this installation)")
    return "\n".join(lines)


def describe_checkpoint(path: str) -> str:
    """Load a checkpoint strictly and say which model it holds."""
    from hfan.models.checkpoints import load_model

    model = load_model(path)
    config = model.config
    parameters = sum(p.numel() for p in model.parameters())
    return (f"checkpoint {path}: backbone {config.backbone.name}, decoder width {config.decode_head.embed_dim}, "
            f"select_method {config.decode_head.select_method}, {parameters:,} parameters, all keys matched")
