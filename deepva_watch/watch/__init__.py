"""Noticing files: one :class:`~deepva_watch.watch.supervisor.FolderWatch` per watched folder."""
