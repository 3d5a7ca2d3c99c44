/*! Property tests over the heartbeat parser and validators (see the hostile-input issue). */
