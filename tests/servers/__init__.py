"""Real servers on 127.0.0.1 that test fixtures start and stop."""
