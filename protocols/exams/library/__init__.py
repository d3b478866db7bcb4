"""Shipped standard exams as YAML files (data only); see :mod:`protocols.exams.standard`."""
