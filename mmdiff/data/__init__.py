"""Data layer: decode/encode audio-video (av_io), the training cache (cache), building it from raw
videos (prepare), serving clips to training (dataset, imports torch), and a procedural dataset
whose sounds are caused by visual events (synthetic). See docs/data.md.

Nothing is imported here, so `import mmdiff.data` stays free of torch and PyAV.
"""
