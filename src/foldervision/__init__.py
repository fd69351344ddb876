"""foldervision: folders of images in, working classifiers and image search out."""

__version__ = "0.1.0"
