"""Teachers: resolve a name to a Hugging Face model, fine-tune it, run it."""
