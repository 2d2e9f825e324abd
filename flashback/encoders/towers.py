"""The two towers as the modules every backend runs: what goes in is what the pipeline has, what comes
out is what it needs.

``ImageTower`` takes the (N, S, S, 3) uint8 frames the decoder makes and returns unit vectors: the
permute, the cast and the normalisation are part of the graph, so an exported model (OpenVINO, ONNX)
does them in its own kernels and a quarter of the bytes cross into it.  ``TextTower`` takes tokens
trimmed to the batch's longest caption (``trim_tokens``): CLIP's text transformer is causal and pools
at the end-of-text token, so the padding after it changes nothing and costs most of the work (a
caption is about 15 of the 77 positions).  Trimmed and untrimmed vectors agree to float rounding.
"""

from __future__ import annotations

import numpy as np

EOT_POOLS = ("argmax", "eos")  # pools that read the end-of-text position, so trailing padding is inert


def trimmable(model) -> bool:
    """Whether padding after the last end-of-text token can be dropped: a causal open_clip ``CLIP``
    text tower (token embedding, attention mask) pooling at end-of-text.  HF-text towers are not."""
    return (getattr(model, "attn_mask", None) is not None and hasattr(model, "token_embedding")
            and getattr(model, "text_pool_type", None) in EOT_POOLS)


def trim_tokens(tokens: np.ndarray, model) -> np.ndarray:
    """``tokens`` cut after the batch's last end-of-text token, found as the tower's pool finds it (the
    largest id, or the first ``text_eos_id``), when the model allows it."""
    if not trimmable(model) or tokens.size == 0:
        return tokens
    if model.text_pool_type == "eos":
        ends = (tokens == model.text_eos_id).argmax(1)
    else:
        ends = tokens.argmax(1)
    return np.ascontiguousarray(tokens[:, : int(ends.max()) + 1])


def image_tower(model, mean, std, dtype):
    """A ``torch.nn.Module``: (N, S, S, 3) uint8 -> (N, D) unit vectors (mean and std in 0..1 units;
    ``dtype`` the one the model was loaded in, which its first parameter need not show)."""
    import torch

    class ImageTower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.visual = model.visual
            self.register_buffer("mean", torch.tensor(mean, dtype=dtype).view(1, 3, 1, 1) * 255, persistent=False)
            self.register_buffer("std", torch.tensor(std, dtype=dtype).view(1, 3, 1, 1) * 255, persistent=False)

        def forward(self, rgb):
            x = (rgb.permute(0, 3, 1, 2).to(self.mean.dtype) - self.mean) / self.std
            return torch.nn.functional.normalize(self.visual(x), dim=-1)

    return ImageTower().to(next(model.visual.parameters()).device).eval()


def text_tower(model):
    """A ``torch.nn.Module``: (N, L) int64 tokens, L up to the context -> (N, D) unit vectors.  For a
    trimmable tower the positional embedding and causal mask are cut to L (open_clip's own
    ``encode_text`` adds all 77); any other tower runs ``encode_text`` on what it is given."""
    import torch
    from open_clip.transformer import text_global_pool

    class TextTower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, tokens):
            m = self.model
            if not trimmable(m):
                return m.encode_text(tokens, normalize=True)
            n = tokens.shape[1]
            cast = m.transformer.get_cast_dtype()
            x = m.token_embedding(tokens).to(cast) + m.positional_embedding[:n].to(cast)
            x = m.transformer(x, attn_mask=m.attn_mask[:n, :n])
            x = m.ln_final(x)
            x = text_global_pool(x, tokens, m.text_pool_type, eos_token_id=getattr(m, "text_eos_id", None))
            if m.text_projection is not None:
                x = m.text_projection(x) if isinstance(m.text_projection, torch.nn.Linear) else x @ m.text_projection
            return torch.nn.functional.normalize(x, dim=-1)

    return TextTower().eval()
