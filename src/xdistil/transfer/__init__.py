"""The transfer set: teacher outputs (logits, a layer's representation) for every text, cached on disk."""
