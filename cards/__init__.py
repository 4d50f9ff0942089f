"""Dataset card templates (installed as package data of ``distalign_data.cards``; read by ``distalign_data.hub``)."""
