"""Settings, retrieval state and (later) the answer pipeline shared by the CLI, the app and eval."""
