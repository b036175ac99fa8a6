"""Example zmr apps. Each module is self-contained, so it ships to workers as a single module by value."""
