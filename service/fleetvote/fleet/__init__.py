"""The fleet: discovery of board ports, one owner task per board, and the ensemble's members."""
