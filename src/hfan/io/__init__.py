"""Files in and out: videos and frame folders (video.py), images and masks (images.py)."""
