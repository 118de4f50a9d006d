"""mmdiff evaluation: FVD/KVD/FAD feature extractors and metrics, the 2,048-sample protocol, and user studies.

Protocol modules: config (ProtocolConfig, named protocols), registry (metrics and features), sources (clips),
bank (cached per-clip features), checks, report (protocol card, table, files), protocol (the run loop), run (CLI).
"""
