"""The names of the sampling-mask kinds (`physics.masks` draws them), in a module without torch so
that the config and the command-line parser can name them without loading it."""

MASK_KINDS = ("kdmri", "kdmri_wide", "random", "equispaced_fraction", "gaussian2d", "fixed")
