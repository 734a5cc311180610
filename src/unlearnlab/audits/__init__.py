"""Audits: each file holds one audit as a library function plus a registry class."""
