"""UI layer of app.py: builds the Gradio studio (one module per tab). Model code lives in mmdiff/ and eval/."""


def build_app(*args, **kwargs):
    """See studio.app.build_app (imported lazily so `import studio` does not import gradio)."""
    from studio.app import build_app as _build

    return _build(*args, **kwargs)
