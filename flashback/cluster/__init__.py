"""Scoring (and memory building) on a Ray cluster: the same pipeline, spread over machines.

The pattern is Ray Data's for batch inference, written with Ray's tasks and actors so each video
keeps its own retries and its own error:

- ``workers.decode_batches``: a CPU task per video (a streaming generator) decodes it on the time
  grid and yields ``SampleBatch``es of encoder-ready frames into the object store;
- ``workers.VideoEncoder``: actors that hold the model once (one per GPU, or CPU actors) embed the
  batches, and score a finished video against the memory they were sent (checked on arrival);
- ``scorer.ClusterScorer``: the driver hands batches to actors, retries a video whose worker died
  (twice and it is reported as failed), and returns results to the one writer of the store.

Ray is an optional dependency (``pip install 'flashback[ray]'``); nothing here is imported unless
``--ray`` is given.
"""
