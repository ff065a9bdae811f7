"""The trainui service: routes, run store, scheduler and learner launcher."""
