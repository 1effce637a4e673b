"""Helpers shared by the test tiers (not a test package: nothing here is collected)."""
