"""Models: the Keras CNN builder from YAML descriptions, and model inspection.

Heavy: imports Keras.
"""
