"""A batch app whose map_batch returns columns of different lengths."""


def map_batch(filename, contents):
    return contents.split(), [1]
