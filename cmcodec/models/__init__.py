"""Neural models: decoder profiles (data rows), safe loading, image-to-text and text-to-image backends.
torch, diffusers and transformers are imported inside the functions that need them.
"""
