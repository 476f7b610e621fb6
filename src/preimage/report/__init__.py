"""Reports of a run from cached artifacts: ground-truth evaluation, figures (PNG + PDF), tables and a
self-contained HTML page with a Markdown summary."""

from preimage.report.build import FigureSettings, build_report
from preimage.report.document import GroupSection, Report, render_html, render_markdown, write_report
from preimage.report.evaluation import evaluate, planted_pairs, winner

__all__ = ["FigureSettings", "GroupSection", "Report", "build_report", "evaluate", "planted_pairs", "render_html",
           "render_markdown", "winner", "write_report"]
