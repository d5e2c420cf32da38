"""Detection (SPEC §3 Analyze): incremental windows, the four built-in detectors, the engine, learning."""
