"""The training engine: compiled epochs over device-resident data, logged after each call."""
