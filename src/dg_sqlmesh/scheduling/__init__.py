"""When models run: the adaptive schedule, the due models, the partition status sensor."""
