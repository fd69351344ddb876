"""Acting on a person's photo library: moving files out of the way, safely and undoably."""
