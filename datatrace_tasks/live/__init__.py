"""Live progress: the in-process monitor, the event broadcaster, rates and ETAs."""
