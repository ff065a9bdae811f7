"""trainui: submit, watch and manage deep-learning training runs on your own GPUs."""

__version__ = "0.1.0"
