"""Frames and texts to vectors: open_clip's two towers (``encoder``), the weights they name
(``encoder_registry``), sentence-transformers for caption input (``text_encoder``), the interfaces the
later stages meet them at (``protocols``) and their cost (``efficiency``)."""
