/*! Property tests over the pane command (see the hostile-input issue). */
