"""What is done with a store after scoring: stored footage ranked by a text (``search``) and the
verdict exemplars a camera's overlay keeps (``overlays``)."""
