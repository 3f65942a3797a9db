"""Experiments over recipes: the paper's reward ablation on the miniature (`sayo experiment ablation`)."""
