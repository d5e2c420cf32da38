"""The closed loop (SPEC §1): the per-sector MAPE-K cycle and the proposal life cycle it drives."""
