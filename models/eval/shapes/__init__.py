"""The shapes benchmark of the demo model: a programmatic detector and GenEval's rules on the shapes prompt set."""
