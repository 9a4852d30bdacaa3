"""fleetvote: a CIFAR-10 classifier made of several cheap STM32 boards that vote."""

__version__ = "0.1.0"
