"""Reports: self-contained HTML pages with matplotlib figures."""
