"""Networks: the viewmaker and the encoders."""
