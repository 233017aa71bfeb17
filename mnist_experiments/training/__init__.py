"""Training: seeding and threads, the input pipeline, fit, and evaluation of a fitted model.

Heavy: imports TensorFlow and Keras.
"""
