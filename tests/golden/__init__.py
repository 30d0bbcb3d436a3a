"""Golden files of stored event payloads, and the script that writes new ones."""
