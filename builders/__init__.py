"""``datasets`` builders for the three benchmark datasets (installed as ``distalign_data.builders``)."""
