"""The TUI's screens: the run list, one run with its log, the manifest editor and dialogs."""
