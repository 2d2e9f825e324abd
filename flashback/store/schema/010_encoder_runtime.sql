-- Schema version 10: where the encoder ran for each scoring ('torch/fp32', 'openvino/bf16 image, fp32
-- text', ...).  Not part of the run id: every backend's vectors agree with PyTorch fp32 to a cosine of
-- 1e-4, so a result does not change with it, and a store scored partly on a GPU and partly on a CPU
-- keeps one run.  NULL for scorings stored before.

ALTER TABLE scorings ADD COLUMN encoder_runtime VARCHAR;
