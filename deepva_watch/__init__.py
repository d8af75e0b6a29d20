"""deepva-watch: a watch-folder daemon that hands media to DeepVA and writes the results as sidecars."""

__version__ = "0.1.0"
