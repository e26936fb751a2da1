"""Scene inference runs in memory bounded by a strip of tiles, not by the scene.

A 4096 x 2048 px scene (the real Sen1Floods11 chip repeated; S1 at half the resolution,
so it is warped) runs in a subprocess whose data segment is capped (``RLIMIT_DATA``,
which counts every numpy and GDAL allocation) at 112 MB above what the process holds
after its imports: less than the 128 MB that reading the opt_v2 scene alone takes.
(GDAL's COG driver needs 70-95 MB of its own to copy a float32 raster with overviews,
whatever its size.) A stand-in model keeps the check about the scene machinery; the
real model needs GBs of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.scenes import write_raster

HEIGHT, WIDTH = 4096, 2048
BUDGET_MB = 112

_SCRIPT = """
import re, resource, sys
from pathlib import Path
from axion.prediction.scene import run_scene, validate_scene

def data_bytes():
    return int(re.search(r"VmData:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024

s1, opt, out = (Path(p) for p in sys.argv[1:4])
info = validate_scene(s1, opt, out)
cap = data_bytes() + {budget} * 2**20
resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
run_scene(info, out, lambda s1, o, names: o, tile_size=256, overlap=32, batch_size=4)
print("scene done")
try:
    import rasterio
    with rasterio.open(opt) as src:
        src.read()
    print("whole read fits")
except MemoryError:
    print("whole read refused")
"""


@pytest.mark.slow
def test_a_scene_runs_under_a_memory_cap_that_a_whole_scene_read_exceeds(
    sen1floods11: Path, tmp_path: Path
) -> None:
    import rasterio
    from affine import Affine

    with rasterio.open(sen1floods11 / "S1" / "Spain_7370579_S1Hand.tif") as src:
        s1, crs, t = src.read().astype(np.float32), src.crs, src.transform
    with rasterio.open(sen1floods11 / "S2" / "Spain_7370579_S2Hand.tif") as src:
        s2 = src.read([2, 3, 4, 8]).astype(np.float32)
    reps = (HEIGHT // 512, WIDTH // 512)
    opt = np.tile(s2, (1, *reps))
    assert opt.nbytes > BUDGET_MB * 2**20  # reading opt_v2 whole would not fit
    opt_path = write_raster(tmp_path / "opt_v2.tif", opt, crs, t)
    coarse = np.tile(s1[:, ::2, ::2], (1, *reps))  # S1 at twice the pixel size: warped on the fly
    s1_path = write_raster(tmp_path / "s1.tif", coarse, crs, Affine(t.a * 2, 0, t.c, 0, t.e * 2, t.f))
    out = tmp_path / "out" / "opt_v3.tif"
    out.parent.mkdir()
    env = {**os.environ, "GDAL_CACHEMAX": "8", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(budget=BUDGET_MB), str(s1_path), str(opt_path), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["scene", "done", "whole", "read", "refused"], proc.stdout
    with rasterio.open(out) as src:
        assert (src.height, src.width) == (HEIGHT, WIDTH)
        assert src.overviews(1)  # a COG with overviews, made under the same cap
        window = src.read(window=((1000, 1100), (200, 300)))
    np.testing.assert_allclose(window, opt[:, 1000:1100, 200:300], rtol=1e-6)
    assert sorted(p.name for p in out.parent.iterdir()) == ["opt_v3.tif"]
