"""foldervision: folders of images in, working classifiers and image search out."""

from foldervision import tensorflow_startup

tensorflow_startup.install()

__version__ = "0.1.0"
