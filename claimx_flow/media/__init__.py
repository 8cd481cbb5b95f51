"""Media files: the downloader, its cache files and the address checks."""
