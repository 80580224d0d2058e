"""GPU probes: the only package that imports torch and diffusers."""
