"""Bundled copies of the real ComfyUI captures (used by the fidelity tests)."""
