"""The model modules: embedding, aesthetic, objects, captions, OCR, faces and cloud; each
declares its model on the runtime's base.
"""
