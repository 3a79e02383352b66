"""Reports: self-contained HTML pages (Jinja2 templates in templates/, one base page and
style sheet) with inline SVG figures: deployment, validation, the regression trend; JUnit XML."""
