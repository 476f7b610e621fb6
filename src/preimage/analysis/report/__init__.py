"""Reports of a run from cached artifacts: figures (PNG + PDF), tables and a self-contained HTML page with a
Markdown summary."""

import lazy_loader

# Submodules load on first use: see preimage/__init__.py.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "build": ["FigureSettings", "build_report"],
        "layout": ["GROUP_FIGURES", "RUN_FIGURES", "ReportFigures"],
        "document": ["GroupSection", "Report", "render_html", "render_markdown", "write_report"],
        "tables": ["winner"],
    },
)
