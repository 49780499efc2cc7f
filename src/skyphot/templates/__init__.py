"""Survey templates for image subtraction: an on-disk cache and image cutout services."""
