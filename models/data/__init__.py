"""Training data: the procedural shapes dataset and image folders."""
