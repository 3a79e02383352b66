"""The build stage: render an image's sources from Jinja templates, run
PlatformIO, read sizes from the ELF. Only this package runs `pio`."""
