"""collabrl: train LLMs to collaborate with people, not just answer them."""

__version__ = "0.1.0"
