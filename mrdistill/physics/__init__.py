"""MRI physics: FFTs, sampling masks, forward operators and data consistency."""
