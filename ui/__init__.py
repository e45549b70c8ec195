"""The seller's screens, one module each, with their handlers beside them; app.py assembles them."""
