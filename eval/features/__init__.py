"""Feature extractors for FVD/KVD (i3d) and FAD (audioclip, clap), registered by name."""
from eval.features.base import (EXTRACTORS, FeatureExtractor, MissingWeightsError, WeightSpec, load_extractor,
                                resolve_weights_dir)

__all__ = ["EXTRACTORS", "FeatureExtractor", "MissingWeightsError", "WeightSpec", "load_extractor",
           "resolve_weights_dir"]
