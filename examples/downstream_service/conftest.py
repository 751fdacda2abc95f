# Makes `notes_service` importable from this folder's tests (an installed
# project would not need it). The identity fixtures come from identity's
# pytest plugin, loaded by its entry point: nothing to import for them.
