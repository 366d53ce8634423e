"""Build the tiny, randomly initialised emotion2vec demo model in ``media_ops/demo_models/emotion2vec_demo``.

Why it exists: the real emotion2vec_plus_large weights (1.25 GB) cannot be downloaded here and are too big for
the repository and for tests. This script writes a model directory with the *same layout and architecture
family* as the real one (``config.yaml`` + ``model.pt`` + ``tokens.txt``, ``model: Emotion2vec``, the 9 real
labels in the real order), only with tiny dimensions and random weights, so that the whole loading and
inference path (FunASR's ``AutoModel`` and ``generate``) runs for real in tests and demos. Its scores mean
nothing.

The output is deterministic for a given torch version (seeded); run it again after changing the config:

    .venv/bin/python scripts/build_demo_emotion_model.py [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import yaml  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "media_ops" / "demo_models" / "emotion2vec_demo"
SEED = 20240917

# The labels of emotion2vec_plus_large, in the order of its tokens.txt (the classifier's output order).
TOKENS = [
    "生气/angry",
    "厌恶/disgusted",
    "恐惧/fearful",
    "开心/happy",
    "中立/neutral",
    "其他/other",
    "难过/sad",
    "吃惊/surprised",
    "<unk>",
]

EMBED_DIM = 64
HEADS = 4
DEPTH = 1
PRENET_DEPTH = 1
CONV_CHANNELS = 32


def demo_config() -> dict[str, Any]:
    """The config.yaml content: the real emotion2vec+ key set, with tiny sizes.

    FunASR reads most keys by attribute access, so every key must be present even when its value is
    irrelevant for inference (training-only settings are kept at the real model's values). The conv feature
    encoder keeps the real strides (total stride 320 samples = 20 ms, i.e. 50 frames per second) so frame
    timing matches the real model; only the channel counts are small.
    """
    conv = CONV_CHANNELS
    return {
        "model": "Emotion2vec",
        "model_conf": {
            "loss_beta": 0.0,
            "loss_scale": None,
            "depth": DEPTH,
            "start_drop_path_rate": 0.0,
            "end_drop_path_rate": 0.0,
            "num_heads": HEADS,
            "norm_eps": 1e-05,
            "norm_affine": True,
            "encoder_dropout": 0.1,
            "post_mlp_drop": 0.1,
            "attention_dropout": 0.1,
            "activation_dropout": 0.0,
            "dropout_input": 0.0,
            "layerdrop": 0.0,
            "embed_dim": EMBED_DIM,
            "mlp_ratio": 2.0,
            "layer_norm_first": False,
            "average_top_k_layers": DEPTH,
            "end_of_block_targets": False,
            "clone_batch": 8,
            "layer_norm_target_layer": False,
            "batch_norm_target_layer": False,
            "instance_norm_target_layer": True,
            "instance_norm_targets": False,
            "layer_norm_targets": False,
            "ema_decay": 0.999,
            "ema_same_dtype": True,
            "log_norms": True,
            "ema_end_decay": 0.99999,
            "ema_anneal_end_step": 20000,
            "ema_encoder_only": False,
            "max_update": 100000,
            "extractor_mode": "layer_norm",
            "shared_decoder": None,
            "min_target_var": 0.1,
            "min_pred_var": 0.01,
            "supported_modality": "AUDIO",
            "mae_init": False,
            "seed": 1,
            "skip_ema": False,
            "cls_loss": 1.0,
            "recon_loss": 0.0,
            "d2v_loss": 1.0,
            "decoder_group": False,
            "adversarial_training": False,
            "adversarial_hidden_dim": 128,
            "adversarial_weight": 0.1,
            "cls_type": "chunk",
            "normalize": True,
            "modalities": {
                "audio": {
                    "type": "AUDIO",
                    "prenet_depth": PRENET_DEPTH,
                    "prenet_layerdrop": 0.0,
                    "prenet_dropout": 0.1,
                    "start_drop_path_rate": 0.0,
                    "end_drop_path_rate": 0.0,
                    "num_extra_tokens": 10,
                    "init_extra_token_zero": True,
                    "mask_noise_std": 0.01,
                    "mask_prob_min": None,
                    "inverse_mask": False,
                    "mask_prob": 0.5,
                    "mask_prob_adjust": 0.05,
                    "keep_masked_pct": 0.0,
                    "mask_length": 5,
                    "add_masks": False,
                    "remove_masks": False,
                    "mask_dropout": 0.0,
                    "encoder_zero_mask": True,
                    "mask_channel_prob": 0.0,
                    "mask_channel_length": 64,
                    "ema_local_encoder": False,
                    "local_grad_mult": 1.0,
                    "use_alibi_encoder": True,
                    "alibi_scale": 1.0,
                    "learned_alibi": False,
                    "alibi_max_pos": None,
                    "learned_alibi_scale": True,
                    "learned_alibi_scale_per_head": True,
                    "learned_alibi_scale_per_layer": False,
                    "num_alibi_heads": HEADS,
                    "model_depth": DEPTH,
                    "decoder": {
                        "decoder_dim": 16,
                        "decoder_groups": 4,
                        "decoder_kernel": 7,
                        "decoder_layers": 1,
                        "input_dropout": 0.1,
                        "add_positions_masked": False,
                        "add_positions_all": False,
                        "decoder_residual": True,
                        "projection_layers": 1,
                        "projection_ratio": 2.0,
                    },
                    "extractor_mode": "layer_norm",
                    # Evaluated by FunASR with eval(): keep it a literal. Strides 5*2*2*2*2*2*2 = 320.
                    "feature_encoder_spec": (
                        f"[({conv}, 10, 5)] + [({conv}, 3, 2)] * 4 + [({conv}, 2, 2)] * 2"
                    ),
                    "conv_pos_width": 95,
                    "conv_pos_groups": 16,
                    "conv_pos_depth": 5,
                    "conv_pos_pre_ln": False,
                }
            },
        },
        "tokenizer": "CharTokenizer",
        "tokenizer_conf": {"unk_symbol": "<unk>", "split_with_space": True},
    }


def build_state_dict(config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Instantiate FunASR's own Emotion2vec class from the config and return its seeded random weights.

    Building through the real class guarantees the key names and shapes are exactly what AutoModel expects.
    ``vocab_size`` creates the classifier head (``proj``), as FunASR does when tokens.txt is non-empty.
    """
    from funasr.models.emotion2vec.model import Emotion2vec

    torch.manual_seed(SEED)
    model = Emotion2vec(model_conf=config["model_conf"], vocab_size=len(TOKENS))
    # A larger head init than PyTorch's default so the random model's scores are visibly non-uniform.
    torch.nn.init.normal_(model.proj.weight, std=0.5)
    # The published emotion2vec+ checkpoints carry no pre-training decoder weights (FunASR prints "miss key in
    # ckpt" for them and keeps them random; inference never uses them). Leave them out here too, so the demo
    # exercises the same loading path as the real model.
    return {
        k: v.detach().clone().contiguous()
        for k, v in model.state_dict().items()
        if not k.startswith("modality_encoders.AUDIO.decoder.")
    }


def write_model_dir(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    config = demo_config()
    with open(out / "config.yaml", "w", encoding="utf-8") as f:
        f.write("# Tiny random-weight emotion2vec demo model: scores are meaningless. See README.md.\n")
        f.write("# Generated by scripts/build_demo_emotion_model.py; do not edit by hand.\n")
        yaml.safe_dump(config, f, allow_unicode=True, sort_keys=False)
    (out / "tokens.txt").write_text("".join(t + "\n" for t in TOKENS), encoding="utf-8")
    state = build_state_dict(config)
    torch.save(state, out / "model.pt")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = write_model_dir(args.out)
    model_pt = out / "model.pt"
    digest = hashlib.sha256(model_pt.read_bytes()).hexdigest()[:12]
    n_params = sum(t.numel() for t in torch.load(model_pt, map_location="cpu", weights_only=True).values())
    print(
        f"wrote {out}: {n_params} parameters, model.pt {model_pt.stat().st_size} bytes, sha256[:12] {digest}"
    )


if __name__ == "__main__":
    main()
