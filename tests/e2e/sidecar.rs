/*! sidecar tests */
