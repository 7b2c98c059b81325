"""SAM 3's video tracker from the `sam3` package, one job per module: `shims` (importing
the tracker's modules without SAM 3's detector stack), `network` (building it),
`checkpoint` (reading and checking its tensors) and `family` (how the engine drives it).
docs/SAM3.md has the design.
"""
