"""Media libraries in place: reading a Kodi / Jellyfin / Emby library's NFO files
(:mod:`~embedgenre.library.nfo`), writing predicted genres back into them byte for byte
(:mod:`~embedgenre.library.edit`), and the journal that undoes every write
(:mod:`~embedgenre.library.tag`)."""
