"""The "Core" issue's first benchmark: grid_sample forward and forward+backward.

Shapes (256,1,28,28), (32,3,224,224), (16,64,56,56) and (1,1,2048,2048), float32,
bilinear, zeros, align_corners=False; stn_numba CPU against torch CPU and
``scipy.ndimage.map_coordinates`` (when installed), each in its own process.
A thin entry point over ``python -m benchmarks``: every option of that
command applies (``--quick``, ``--threads``, ``--out``, ...)::

    python -m benchmarks.bench_sampler [--quick] [--threads 2]
"""

import sys

from ._suite import DEFAULT_OUT, main

if __name__ == "__main__":
    sys.exit(main(description=__doc__.splitlines()[0], shapes="sampler", ops="grid_sample,grid_sample fwd+bwd",
                  impl="stn_numba,torch,scipy", startup=False, out=DEFAULT_OUT / "sampler"))
