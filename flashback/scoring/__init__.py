"""Retrieval to scores and events: segment scores and explanations (``scoring``), events
(``events``), the ``Detector`` that runs one video through every stage (``pipeline``), caption
tracks as input (``captions``) and the JSON/CSV exports (``export``)."""
