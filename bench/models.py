"""Checkpoints the benchmark needs, built locally (never committed, never downloaded).

* Full-size AudioSeal 16-bit generator and detector: the architecture of the real model cards shipped in
  the ``audioseal`` package (``audioseal_wm_16bits``, ``audioseal_detector_16bits``), random weights. Random
  weights cost exactly what trained ones cost, so they are fine for timing and useless for anything else.
* A tiny pair for the many-small-jobs memory test: the shipped demo checkpoints when present, otherwise a
  random tiny pair of the same architecture (``scripts/train_demo_watermark.build_models``).

Checkpoints are loader-compatible dicts (``"xp.cfg"`` + ``"model"``), so the platform loads them through the
same ``AudioSeal.load_generator(path)`` code path as any other checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_TORCH_COMPILE", "1")

REPO = Path(__file__).resolve().parent.parent
DEMO_DIR = REPO / "media_ops" / "demo_models" / "audioseal"


def _card(name: str) -> dict[str, Any]:
    """The model card of the installed audioseal package, as a plain dict without the download URL."""
    import audioseal
    from omegaconf import OmegaConf

    path = Path(audioseal.__file__).parent / "cards" / f"{name}.yaml"
    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    assert isinstance(cfg, dict)
    for key in ("checkpoint", "name", "model_type"):
        cfg.pop(key, None)
    return cfg


def _clean_state(model: Any) -> dict[str, Any]:
    # The loader re-inserts "inner_conv." (convert_state_dict_for_scriptable_model): strip it (MODELS.md).
    return {k.replace("inner_conv.", ""): v.detach().clone() for k, v in model.state_dict().items()}


def full_size_checkpoints(out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    """Build (once) and save the full-size 16-bit generator and detector with random weights."""
    import torch
    from audioseal.builder import (
        AudioSealDetectorConfig,
        AudioSealWMConfig,
        create_detector,
        create_generator,
    )
    from audioseal.loader import AudioSeal

    out_dir.mkdir(parents=True, exist_ok=True)
    gen_path, det_path = out_dir / "generator.pth", out_dir / "detector.pth"
    if gen_path.is_file() and det_path.is_file():
        return gen_path, det_path
    torch.manual_seed(seed)
    gen_cfg, det_cfg = _card("audioseal_wm_16bits"), _card("audioseal_detector_16bits")
    generator = create_generator(AudioSeal.parse_config(dict(gen_cfg), config_type=AudioSealWMConfig))
    detector = create_detector(AudioSeal.parse_config(dict(det_cfg), config_type=AudioSealDetectorConfig))
    torch.save({"xp.cfg": gen_cfg, "model": _clean_state(generator)}, gen_path)
    torch.save({"xp.cfg": det_cfg, "model": _clean_state(detector)}, det_path)
    return gen_path, det_path


def tiny_checkpoints(out_dir: Path) -> tuple[Path, Path, str]:
    """The shipped demo pair when present, else a random tiny pair of the same architecture."""
    gen, det = DEMO_DIR / "generator.pth", DEMO_DIR / "detector.pth"
    if gen.is_file() and det.is_file():
        return gen, det, "demo (shipped)"
    gen, det = out_dir / "generator.pth", out_dir / "detector.pth"
    if not (gen.is_file() and det.is_file()):
        import sys

        sys.path.insert(0, str(REPO / "scripts"))
        import train_demo_watermark as tdw

        generator, detector = tdw.build_models()
        tdw.save_checkpoints(generator, detector, out_dir)
    return gen, det, "tiny random (demo architecture)"


def count_parameters(path: Path, which: str) -> int:
    """Parameters of a checkpoint, loaded through the library (a check that the file is what we think)."""
    from audioseal import AudioSeal

    load = AudioSeal.load_generator if which == "generator" else AudioSeal.load_detector
    model = load(str(path))
    return sum(p.numel() for p in model.parameters())


# emotion2vec base, reconstructed: data2vec 2.0 base sizes (768 dim, 12 heads, 8 + 4 prenet blocks,
# 512-channel conv feature encoder): 93 M parameters, like emotion2vec_base and MODELS.md's measurement.
EMOTION_BASE = {"embed_dim": 768, "heads": 12, "depth": 8, "prenet_depth": 4, "conv": 512, "mlp_ratio": 4.0}


def emotion_base_dir(out_dir: Path) -> Path:
    """Build (once) an emotion2vec+ directory of base size with random weights, loadable by FunASR offline."""
    if all((out_dir / name).is_file() for name in ("config.yaml", "model.pt", "tokens.txt")):
        return out_dir
    import sys

    import torch
    import yaml

    sys.path.insert(0, str(REPO / "scripts"))
    import build_demo_emotion_model as demo

    config = demo.demo_config()
    conf, audio = config["model_conf"], config["model_conf"]["modalities"]["audio"]
    b = EMOTION_BASE
    conf.update(embed_dim=b["embed_dim"], num_heads=b["heads"], depth=b["depth"], mlp_ratio=b["mlp_ratio"],
                average_top_k_layers=b["depth"])
    audio.update(prenet_depth=b["prenet_depth"], num_alibi_heads=b["heads"], model_depth=b["depth"],
                 feature_encoder_spec=f"[({b['conv']}, 10, 5)] + [({b['conv']}, 3, 2)] * 4 + "
                 f"[({b['conv']}, 2, 2)] * 2")
    audio["decoder"].update(decoder_dim=384, decoder_groups=16)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    state = demo.build_state_dict(config)
    with open(out_dir / "config.yaml", "w", encoding="utf-8") as f:
        f.write("# Base-size emotion2vec with RANDOM weights: for timing only (bench/models.py).\n")
        yaml.safe_dump(config, f, allow_unicode=True, sort_keys=False)
    (out_dir / "tokens.txt").write_text("".join(t + "\n" for t in demo.TOKENS), encoding="utf-8")
    torch.save(state, out_dir / "model.pt")
    return out_dir
