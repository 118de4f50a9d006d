"""Text conditioning: a frozen offline sentence encoder (encoder.py), captions for training (captions.py).

Nothing is loaded on import; `TextEncoder()` reads the weights when it is built.
"""
