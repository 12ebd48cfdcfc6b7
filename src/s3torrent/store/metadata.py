"""Every table, row type and query of the metadata in one namespace, for tests and tools.

The server's own code imports the module it needs (schema, rows, queries) and writes only
through the metadata store (s3torrent.store.metastore).
"""

from s3torrent.store.queries import *  # noqa: F403
from s3torrent.store.rows import *  # noqa: F403
from s3torrent.store.schema import *  # noqa: F403
from s3torrent.store.sql import *  # noqa: F403
