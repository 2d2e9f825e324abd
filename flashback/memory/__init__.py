"""The pseudo-scene memory: the bundle format (``bundle``, ``manifest``), the captions' prompt
templates and derived memories (``templates``, ``variants``), the texts a run adds (``extras``), top-K
search under alpha (``retrieval``) and the embedded default memory (``default_memory``)."""
