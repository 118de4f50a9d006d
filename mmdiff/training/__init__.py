"""Training machinery shared by every trainer (the joint model now, the super-resolution model later)."""
