"""VLP Lab explorer: a Gradio app that shows what DiSa and GalLoP look at (`python app/main.py`)."""
