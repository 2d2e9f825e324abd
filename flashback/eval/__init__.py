"""Measuring it: ground truth (``annotations``), scoring a dataset with cached embeddings
(``evaluate``, ``embedding_cache``), AUC and AP (``metrics``), the report (``report``) and speed
(``bench``)."""
