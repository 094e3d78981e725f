"""Integer codes that kernels take in place of the public mode strings.

Kernels branch on these codes at run time, so one compiled specialisation
serves every mode and padding (fewer compilations, faster start-up).
"""

BILINEAR = 0
NEAREST = 1
BICUBIC = 2

ZEROS = 0
BORDER = 1
REFLECTION = 2
CIRCULAR = 3
CONSTANT = 4  # never reaches a sampling kernel: zeros padding, then `fill_outside`

MODES = {"bilinear": BILINEAR, "nearest": NEAREST, "bicubic": BICUBIC}
PADDING_MODES = {"zeros": ZEROS, "border": BORDER, "reflection": REFLECTION, "circular": CIRCULAR,
                 "constant": CONSTANT}


def sampled_padding(padding):
    """The padding code the sampling kernels run for ``padding``: constant
    padding samples as zeros, then the fill kernels add the fill where taps
    fell outside."""
    return ZEROS if padding == CONSTANT else padding


def fill_sizes(spatial_shape):
    """An input's spatial sizes in array order ((D,) H, W) as the fill kernels
    take them: (W, H, D), D = 1 for images."""
    sizes = tuple(int(size) for size in reversed(tuple(spatial_shape)))
    return sizes + (1,) * (3 - len(sizes))
