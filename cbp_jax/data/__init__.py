"""Task data: local files (shipped in data/), templates, verbalizers, batching."""
