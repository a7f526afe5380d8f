"""Students: pruned vocabulary, compressed embeddings, the BiLSTM, and their on-disk format."""
