/*! Hostile input, races and faults. */
