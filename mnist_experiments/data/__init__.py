"""Data: loaders (Keras, IDX, npz, digits), splits, fingerprints, image files.

Light: NumPy only (scikit-learn and Pillow where a loader needs them); no TensorFlow or MLflow.
"""
