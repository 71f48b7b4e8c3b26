"""rtc: Reasoning & Test-time Compute."""
