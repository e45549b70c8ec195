"""The web layer: who is calling, the sign-in guard, and the files handed to Gradio."""
