"""The web console under /_console: HTML pages and their static JS/CSS.

The server holds no session: the page signs each S3 and admin API request itself (SigV4,
in the browser), so the console gets exactly the answers the API gives its user.
"""

from s3torrent.console.pages import PREFIX, ConsolePages

__all__ = ["PREFIX", "ConsolePages"]
