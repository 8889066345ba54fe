"""Spectral-decay analysis of videos (paper Sec. 3.2), its plot and synthetic ground truth."""
