"""distalign: datasets, metrics and runners for distributional alignment.

The package follows *Benchmarking Distributional Alignment of Large Language
Models* (Meister, Guestrin & Hashimoto, NAACL 2025). ``import distalign_data``
is cheap: heavy libraries (torch, transformers, evaluate, openai, anthropic,
matplotlib) are imported only by the modules that need them.
"""

__version__ = "0.1.0"
