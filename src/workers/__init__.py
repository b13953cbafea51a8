"""Workers that react to events: request fulfilment, partner notifications, deadlines."""
