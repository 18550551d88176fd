"""Task sets: what simulated users want, loaded from files or built-in sets."""
