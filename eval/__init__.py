"""mmdiff evaluation: FVD/KVD/FAD feature extractors and metrics, the 2,048-sample protocol, and user studies."""
