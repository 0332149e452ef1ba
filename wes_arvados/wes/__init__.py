"""WES itself, independent of any backend: models, states, submission, service-info and the Backend interface."""
