"""The static HTML report: one self-contained file from generate and eval run folders.

``collabrl report RUN_DIR ... -o report.html`` reads each folder (``data.py``), embeds what it
found as JSON in one HTML page with its CSS and JS inlined (``build.py``), and the page draws the
tables, plots and conversation browser itself: no server, no network, nothing to install to look
at it. Text from the data is always inserted as text, never as markup.
"""

from collabrl.report.build import build_report
from collabrl.report.data import ReportError, load_run

__all__ = ["ReportError", "build_report", "load_run"]
