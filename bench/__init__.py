"""Side-by-side benchmarks of s3torrent against anchor tools; run with `python -m bench`."""
