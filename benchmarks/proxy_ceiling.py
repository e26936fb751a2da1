"""How much of the proxy opt_v2's error a network could undo: the quality benchmark's test tiles.

The proxy (``axion.data.proxy.degrade_to_proxy``) blurs the ground truth, then scales and shifts
each band and adds noise. The blur is what opt_v3 can undo from opt_v2's neighbourhood and the SAR;
a band's gain and offset are drawn per tile and nothing in the inputs tells them. This prints, over
the 32 SEN12MS-CR test tiles of ``benchmarks/quality.py``, the PSNR of

- the proxy itself (what every gain in docs/model.md is measured from);
- the same proxy unblurred: the very same gain, offset and noise draws (one uniform draw picks the
  blur either way), so this is what a perfect deblur would score;
- the ground truth blurred and nothing else.

Usage, from the repository root (tiles made as the quality benchmark makes them)::

    python benchmarks/proxy_ceiling.py --work /tmp/axion-quality
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("LIGHTLY_DID_VERSION_CHECK", "True")

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument(
        "--work", type=Path, default=Path("/tmp/axion-quality"), help="tiles (made if missing)"
    )
    options = parser.parse_args()

    import numpy as np
    import torch
    from quality import prepare

    from axion.data.dataset import TileDataset, collate_tiles
    from axion.data.proxy import blur_sigma, degrade_to_proxy, gaussian_blur, tile_seed
    from axion.metrics import psnr

    _, mscr = prepare(options.shared, options.work)
    tiles = TileDataset(mscr, "test")
    scores: dict[str, list[float]] = {"proxy": [], "unblurred": [], "blur only": []}
    for index in range(len(tiles)):
        batch = collate_tiles([tiles[index]])
        target = batch["target"][0].numpy()
        seed = tile_seed(batch["name"][0], tiles.proxy_seed)
        sigma = blur_sigma(np.random.default_rng(seed))  # the proxy's own first draw
        candidates = {
            "proxy": degrade_to_proxy(target, seed),
            "unblurred": degrade_to_proxy(target, seed, sharp_share=1.0),
            "blur only": gaussian_blur(target, sigma),
        }
        for name, image in candidates.items():
            value = psnr(torch.from_numpy(image)[None], batch["target"], batch["mask"])
            scores[name].append(float(value))
    proxy = float(np.mean(scores["proxy"]))
    print(f"{len(tiles)} test tiles ({mscr}); mean PSNR against the ground truth:")
    for name, values in scores.items():
        mean = float(np.mean(values))
        print(f"  {name:<10} {mean:.3f} dB ({mean - proxy:+.3f} against the proxy)")


if __name__ == "__main__":
    main()
