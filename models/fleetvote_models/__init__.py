"""Training, quantisation and export of the zoo's CIFAR-10 CNNs (needs the ``train`` extra)."""
