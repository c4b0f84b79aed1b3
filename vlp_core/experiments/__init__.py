"""Protocols as one table, jobs and their launchers, result files and reports."""
