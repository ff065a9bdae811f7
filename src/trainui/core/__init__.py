"""Pure logic shared by the CLI, the service and the learner; imports no UI or web code."""
