"""What Content Credentials cost per output: signing (embed) and reading + validating (verify).

    python -m bench.provenance [--seconds 4,60,600] [--rounds 3]

For noise of each length encoded as WAV, MP3 and M4A (16 kHz mono), it times ``media_ops.provenance
.sign_output`` (the worker's extra step after encoding: ingredient hash, manifest, ES256 signature, the file
rewritten) and ``read_manifest`` (what ``POST /api/v1/provenance/verify`` runs in the web process) against
the development chain (made under ``var/bench/c2pa``), fastest of ``--rounds``. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.models import REPO
from media_ops import audio, provenance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", default="4,60,600")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    chain = provenance.ensure_dev_chain(REPO / "var" / "bench" / "c2pa")
    config = provenance.SigningConfig(str(chain.chain_path), str(chain.key_path))
    anchors = chain.ca_path.read_text()
    rng = np.random.default_rng(0)
    print(f"{'audio':>6} {'format':>6} {'size MB':>8} {'sign ms':>8} {'verify ms':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in (int(s) for s in args.seconds.split(",")):
            samples = (rng.standard_normal((1, seconds * 16_000)) * 0.1).astype(np.float32)
            for fmt in ("wav", "mp3", "m4a"):
                source = Path(tmp) / f"in{seconds}.{fmt}"
                audio.encode(samples, 16_000, fmt, source)
                sign_times, read_times = [], []
                for _ in range(args.rounds):
                    out = Path(tmp) / f"out{seconds}.{fmt}"
                    shutil.copy(source, out)
                    request = provenance.SignRequest(
                        out, fmt, source, fmt, out.name,
                        provenance.WatermarkBinding("AudioSeal", "bench", "0", "1A2B", "bench.1"),
                        provenance.Declaration("bench"),
                    )
                    start = time.perf_counter()
                    assert provenance.sign_output(request, config)["signed"]
                    sign_times.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    with open(out, "rb") as f:
                        assert provenance.read_manifest(f, fmt, anchors).trusted
                    read_times.append(time.perf_counter() - start)
                print(f"{seconds:>5}s {fmt:>6} {source.stat().st_size / 1e6:>8.2f} "
                      f"{min(sign_times) * 1e3:>8.1f} {min(read_times) * 1e3:>10.1f}")


if __name__ == "__main__":
    main()
