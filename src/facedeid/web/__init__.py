"""A local web page (``facedeid serve``) over the same library functions as the CLI."""
