"""UI layer of app.py: builds the Gradio studio. No model code lives here."""
