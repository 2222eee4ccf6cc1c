"""Reports: the tree + timeline HTML page."""

from seedtree.report.html import render_report, write_report

__all__ = ["render_report", "write_report"]
