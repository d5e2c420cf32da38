"""Operations: logging, telemetry, time and identifiers shared by every part of KNHK."""
