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
