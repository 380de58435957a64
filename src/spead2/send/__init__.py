"""Sending SPEAD streams."""
