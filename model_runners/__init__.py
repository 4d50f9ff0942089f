"""Backends that turn prompts into raw model outputs (installed as ``distalign_data.model_runners``).

Heavy libraries are imported inside the backends, never here.
"""
